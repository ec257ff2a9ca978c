"""The backend's settings: defaults, and values out of range refused by name."""

from __future__ import annotations

import tomllib

import pytest

from backend import config


def test_backend_retention_setting_checked() -> None:
    assert config.parse({}).service.requests_retention_days == 30
    doc = tomllib.loads("[service]\nrequests_retention_days = 7\n")
    with pytest.raises(config.ConfigError, match="requests_retention_days"):
        config.parse(doc)
