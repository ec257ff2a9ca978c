"""Agent settings: a TOML file (config/agent.toml) overlaid by the command line.

Every setting has one name, used as the TOML key and (with dashes) as the option.
Validation is pure and happens before anything is opened or created, so a bad setting
is reported by name and changes nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from firmware_bridge.transports import check_baudrate
from protocols import mqtt
from protocols.address import check_loopback, parse_host_port
from protocols.messages import AGENT_INQUIRY_BUDGET
from protocols.numbers import is_int
from protocols.secret_file import read_private


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    terminal_id: str
    merchant_id: str
    mac_key: bytes
    journal: Path
    broker_host: str
    broker_port: int
    serial: str | None = None
    baud: int = 115200
    listen_host: str | None = None
    listen_port: int | None = None
    broker_username: str | None = None
    broker_password: str | None = None
    broker_ca_file: str | None = None
    inquiry_budget: float = 2.2
    advice_wait: float = 0.4
    retry_initial: float = 0.5
    retry_max: float = 60.0
    forward_timeout: float = 5.0
    log_level: str = "INFO"
    log_format: str = "text"
    log_file: str | None = None
    metrics_host: str | None = None
    metrics_port: int | None = None
    #: Where the broker password came from: SIGHUP reads it again.
    broker_password_file: str | None = None

    def __repr__(self) -> str:  # never print the MAC key or the broker password
        shown = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("mac_key", "broker_password")
        }
        return f"AgentConfig({shown}, mac_key=<hidden>)"


#: Setting name -> type, as written in TOML and (dashed) on the command line.
SETTINGS: dict[str, type] = {
    "serial": str,
    "baud": int,
    "listen": str,
    "broker": str,
    "terminal_id": str,
    "merchant_id": str,
    "mac_key": str,
    "mac_key_file": str,
    "journal": str,
    "broker_username": str,
    "broker_password": str,
    "broker_password_file": str,
    "broker_ca_file": str,
    "inquiry_budget": float,
    "advice_wait": float,
    "retry_initial": float,
    "retry_max": float,
    "forward_timeout": float,
    "log_level": str,
    "log_format": str,
    "log_file": str,
    "metrics": str,
}
REQUIRED = ("broker", "terminal_id", "merchant_id", "journal")
#: Two ways to give the MAC key; exactly one of them.
KEY_SETTINGS = ("mac_key", "mac_key_file")
#: Secrets that may be given inline or in a private file (the file keeps them out of `ps`).
SECRET_PAIRS = (KEY_SETTINGS, ("broker_password", "broker_password_file"))
_MID = re.compile(r"[\x20-\x7e]{15}")
_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a TOML file, checked for unknown keys and types."""
    import tomllib  # only with --config: half a MB the agent need not carry otherwise

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if name not in SETTINGS:
            raise ConfigError(f"config file {path}: unknown setting {name!r}")
        want = SETTINGS[name]
        ok = isinstance(value, want) and not isinstance(value, bool)
        if want is float and is_int(value):
            ok, value = True, float(value)
        if not ok:
            raise ConfigError(f"config file {path}: {name} must be a {want.__name__}")
        out[name] = value
    return out


def _address(name: str, value: str, *, port_zero: bool = False) -> tuple[str, int]:
    try:
        return parse_host_port(value, port_zero=port_zero)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"{name}: must be a positive number of seconds, got {value!r}")
    return value


def build(settings: dict[str, Any]) -> AgentConfig:
    """The checked configuration from merged settings (command line over file)."""
    missing = [n for n in REQUIRED if settings.get(n) in (None, "")]
    if missing:
        raise ConfigError(f"{missing[0]}: required (in the config file or on the command line)")
    serial, listen = settings.get("serial"), settings.get("listen")
    if bool(serial) == bool(listen):
        raise ConfigError("serial/listen: give exactly one of them")
    try:
        tid = mqtt.check_terminal_id(settings["terminal_id"])
    except mqtt.SchemaError as exc:
        raise ConfigError(f"terminal_id: {exc}") from None
    mid = settings["merchant_id"]
    if not _MID.fullmatch(mid):
        raise ConfigError("merchant_id: must be 15 printable ASCII characters (field 42)")
    key = _mac_key(settings)
    baud = settings.get("baud", 115200)
    try:
        check_baudrate(baud)
    except ValueError as exc:
        raise ConfigError(f"baud: {exc}") from None
    listen_host = listen_port = None
    if listen:
        listen_host, listen_port = _address("listen", listen, port_zero=True)
        try:
            listen_host = check_loopback(listen_host)
        except ValueError as exc:
            raise ConfigError(f"listen: {exc}") from None
    broker_host, broker_port = _address("broker", settings["broker"])
    journal = Path(settings["journal"])
    _check_journal(journal)
    ca = settings.get("broker_ca_file")
    if ca and not os.access(ca, os.R_OK):
        raise ConfigError(f"broker_ca_file: {ca} cannot be read")
    level = str(settings.get("log_level", "INFO")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level: must be DEBUG, INFO, WARNING or ERROR")
    log_format = settings.get("log_format", "text")
    if log_format not in ("text", "json"):
        raise ConfigError("log_format: must be text or json")
    metrics_host = metrics_port = None
    if settings.get("metrics"):
        metrics_host, metrics_port = _address("metrics", settings["metrics"], port_zero=True)
        if not settings.get("metrics_allow_remote"):
            try:
                metrics_host = check_loopback(metrics_host)
            except ValueError as exc:
                raise ConfigError(
                    f"metrics: {exc} (--metrics-allow-remote serves it to the network)"
                ) from None
    cfg = AgentConfig(
        terminal_id=tid,
        merchant_id=mid,
        mac_key=key,
        journal=journal,
        broker_host=broker_host,
        broker_port=broker_port,
        serial=serial or None,
        baud=baud,
        listen_host=listen_host,
        listen_port=listen_port,
        broker_username=settings.get("broker_username") or None,
        broker_password=_broker_password(settings),
        broker_ca_file=ca or None,
        inquiry_budget=_positive("inquiry_budget", settings.get("inquiry_budget", 2.2)),
        advice_wait=settings.get("advice_wait", 0.4),
        retry_initial=_positive("retry_initial", settings.get("retry_initial", 0.5)),
        retry_max=_positive("retry_max", settings.get("retry_max", 60.0)),
        forward_timeout=_positive("forward_timeout", settings.get("forward_timeout", 5.0)),
        log_level=level,
        log_format=log_format,
        log_file=settings.get("log_file") or None,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        broker_password_file=settings.get("broker_password_file") or None,
    )
    if cfg.inquiry_budget > AGENT_INQUIRY_BUDGET:
        raise ConfigError(
            f"inquiry_budget: PROTOCOL.md 3.6 allows at most {AGENT_INQUIRY_BUDGET} s"
        )
    if not 0 <= cfg.advice_wait <= 1.5:
        raise ConfigError("advice_wait: must be between 0 and 1.5 s (the terminal waits 2 s)")
    if cfg.retry_initial > cfg.retry_max:
        raise ConfigError("retry_initial: must not exceed retry_max")
    return cfg


def _mac_key(settings: dict[str, Any]) -> bytes:
    """The 16-byte MAC key from `mac_key` (hex) or `mac_key_file`; never echoes the key."""
    given = [n for n in KEY_SETTINGS if settings.get(n) not in (None, "")]
    if len(given) != 1:
        raise ConfigError(
            "mac_key/mac_key_file: give exactly one of them"
            + (" (both given)" if given else " (required)")
        )
    if given[0] == "mac_key":
        key_hex = settings["mac_key"]
        if not _HEX32.fullmatch(key_hex):
            raise ConfigError("mac_key: must be 32 hex digits (a 16-byte AES key)")
        return bytes.fromhex(key_hex)
    return _read_key_file(settings["mac_key_file"])


def _read_private(name: str, path: str) -> str:
    """The text of a secret's file, which no one but its owner and group may read or
    write: a world-accessible secret is refused, not used. Never echoes the content."""
    try:
        return read_private(path)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _broker_password(settings: dict[str, Any]) -> str | None:
    password, path = settings.get("broker_password"), settings.get("broker_password_file")
    if password not in (None, "") and path:
        raise ConfigError("broker_password/broker_password_file: give only one of them")
    if path:
        text = _read_private("broker_password_file", path)
        if not text:
            raise ConfigError(f"broker_password_file: {path} is empty")
        return text
    return password


def _read_key_file(path: str) -> bytes:
    """A key file holds the 32 hex digits (surrounding whitespace allowed)."""
    text = _read_private("mac_key_file", path)
    if not _HEX32.fullmatch(text):
        raise ConfigError(f"mac_key_file: {path} must hold 32 hex digits (a 16-byte AES key)")
    return bytes.fromhex(text)


def _check_journal(path: Path) -> None:
    """The journal must be a readable, writable file, or creatable in an existing folder."""
    if path.exists():
        if not path.is_file():
            raise ConfigError(f"journal: {path} is not a file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"journal: {path} cannot be read and written")
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"journal: folder {parent} does not exist or is not writable")
