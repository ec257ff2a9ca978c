"""The agent configuration of a newly provisioned terminal (`terminal add --agent-config`).

The backend never imports the agent: the file is written with the setting names of
config/agent.toml, and tests load it with the agent's own loader. It holds the MAC
key and the broker password, so it is created private (mode 600) and never replaces
an existing file: the key already loaded into a bank terminal must not be lost.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from protocols import mqtt
from protocols.address import parse_host_port

MAC_KEY_BYTES = 16
#: Where config/agent.toml puts them; the installer edits them for the machine.
DEFAULT_SERIAL = "/dev/ttyUSB0"
DEFAULT_JOURNAL = "/var/lib/loyalty-agent/journal.log"


class AgentConfigError(ValueError):
    """The file cannot be written; nothing was written."""


def new_mac_key() -> bytes:
    return secrets.token_bytes(MAC_KEY_BYTES)


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render(
    *,
    terminal_id: str,
    merchant_id: str,
    mac_key: bytes,
    broker: str,
    broker_username: str,
    broker_password: str,
    serial: str = DEFAULT_SERIAL,
    journal: str = DEFAULT_JOURNAL,
    broker_ca_file: str | None = None,
) -> str:
    """The file's text; every value checked first."""
    try:
        mqtt.check_terminal_id(terminal_id)
        mqtt.check_merchant_id(merchant_id)
    except mqtt.SchemaError as exc:
        raise AgentConfigError(str(exc)) from None
    try:
        parse_host_port(broker)
    except ValueError as exc:
        raise AgentConfigError(f"broker: {exc}") from None
    if len(mac_key) != MAC_KEY_BYTES:
        raise AgentConfigError(f"the MAC key must be {MAC_KEY_BYTES} bytes")
    if not broker_username or not broker_password:
        raise AgentConfigError("the terminal's broker user name and password are required")
    settings: list[tuple[str, str]] = [
        ("terminal_id", terminal_id),
        ("merchant_id", merchant_id),
        ("mac_key", mac_key.hex()),
        ("serial", serial),
        ("journal", journal),
        ("broker", broker),
        ("broker_username", broker_username),
        ("broker_password", broker_password),
    ]
    if broker_ca_file:
        settings.append(("broker_ca_file", broker_ca_file))
    head = (
        f"# Agent of terminal {terminal_id}, written by loyalty-backend terminal add.\n"
        "# Secret: the MAC key and the broker password. Keep this file mode 600.\n"
    )
    return head + "".join(f"{name} = {toml_string(value)}\n" for name, value in settings)


def write_agent_config(
    path: str | os.PathLike[str],
    *,
    terminal_id: str,
    merchant_id: str,
    broker: str,
    broker_username: str,
    broker_password: str,
    serial: str = DEFAULT_SERIAL,
    journal: str = DEFAULT_JOURNAL,
    broker_ca_file: str | None = None,
) -> bytes:
    """Write the file (mode 600, never over an existing one) with a fresh MAC key; the
    key, for the operator to load into the bank terminal."""
    key = new_mac_key()
    text = render(
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        mac_key=key,
        broker=broker,
        broker_username=broker_username,
        broker_password=broker_password,
        serial=serial,
        journal=journal,
        broker_ca_file=broker_ca_file,
    )
    target = Path(path)
    if target.exists() or target.is_symlink():
        raise AgentConfigError(f"{target} already exists; it is not replaced")
    folder = target.parent
    try:
        # written in full beside it, then linked in: the name appears complete or not at
        # all, and link() refuses a file that appeared meanwhile
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)  # mode 600
    except OSError as exc:
        raise AgentConfigError(f"{target}: cannot write in {folder}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, target)
    except FileExistsError:
        raise AgentConfigError(f"{target} already exists; it is not replaced") from None
    except OSError as exc:
        raise AgentConfigError(f"{target}: cannot be written: {exc.strerror}") from None
    finally:
        os.unlink(tmp)
    return key
