"""One logging set-up for every service: a line per event, text or JSON, secrets masked.

Lives in `protocols`, the lowest layer, so the agent and the backend configure their logs
the same way. stderr by default (systemd's journal takes it as it is); `--log-file` uses a
WatchedFileHandler so logrotate may move the file away and the next line opens a new one.
Masking is one filter on the handler: every record of every logger passes it, whatever
the format, traceback text included.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

from protocols.identity import mask_card, mask_phone

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# \d is any Unicode digit: a phone typed in Persian digits is masked as well.
_PHONE = re.compile(r"(?<!\d)(?:\+?[9۹٩][8۸٨]|[0۰٠])[9۹٩]\d{9}(?!\d)")
_CARD = re.compile(r"(?<!\d)\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}(?!\d)")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@/\s]+@")
_KEY = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32}(?![0-9A-Fa-f])")
SECRET_WORDS = ("password", "mac_key", "api_key", "secret", "token")


def mask(text: str) -> str:
    """`text` with phone numbers, card numbers and 128-bit hex keys masked.

    Any 32 hex digits are taken for a key: a request id written as uuid4().hex is masked
    too, since nothing in its shape tells it from an AES key."""
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1<hidden>@", text)
    if not any(c.isdigit() for c in text):
        return text
    text = _KEY.sub("<key>", text)
    text = _CARD.sub(lambda m: mask_card(re.sub(r"[ -]", "", m.group(0))), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def mask_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings for the start-up line: secrets by name replaced, the rest masked as text."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if value is None:
            continue
        if any(word in name.lower() for word in SECRET_WORDS) and not name.endswith("_file"):
            out[name] = "<hidden>"
        elif isinstance(value, bytes | bytearray):
            out[name] = "<bytes>"
        elif isinstance(value, os.PathLike):
            out[name] = mask(os.fspath(value))
        else:
            out[name] = mask(str(value)) if isinstance(value, str) else value
    return out


class MaskSecrets(logging.Filter):
    """Renders each record's message (and traceback) once, masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what we have rather than nothing
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, service."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def configure(
    service: str, level: str = "INFO", fmt: str = "text", file: str | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one (stderr or `file`); returns it.

    ValueError for an unknown level or format, OSError when the file cannot be opened.
    """
    check_level(level)
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler: logging.Handler
    if file:
        handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else logging.Formatter(
        TEXT_FORMAT))
    handler.addFilter(MaskSecrets())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def check_level(level: str) -> str:
    if str(level).upper() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    return str(level).upper()


def set_level(level: str) -> str:
    """The root logger's level, as SIGHUP changes it; returns the level now in force."""
    level = check_level(level)
    logging.getLogger().setLevel(level)
    return level
