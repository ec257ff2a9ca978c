"""Fixtures of the backend's tests: the databases of both engines (tests/backend/engines.py)."""

from tests.backend.engines import db, empty_pg_url, pg_url, postgres_server  # noqa: F401
