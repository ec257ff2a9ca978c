"""Mosquitto's dynamic security plugin: the ACLs of our roles, its commands, its file.

Pure code: builds the JSON commands sent on `$CONTROL/dynamic-security/v1`, reads the
plugin's answers and writes the plugin's first `dynamic-security.json`; the connection
that sends them is backend/broker_access.py. docs/mqtt.md, "Broker access", is the
table these functions spell.

Facts about the plugin of Mosquitto 2.0 (Debian 12) relied on here, each checked
against the real broker by tests/backend/test_broker_access.py or tests/test_broker_acl.py:
- a command list `{"commands": [...]}` is answered on `.../v1/response` with
  `{"responses": [...]}`, one per command, each echoing its `correlationData` and
  carrying `error` when it failed;
- `disableClient` disconnects the client's open connections, and a disabled client's
  CONNECT is refused with "Not authorized";
- a shared subscription is checked as its whole filter
  (`$share/loyalty-backend/...`), a received message by its topic;
- passwords are PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte salt, all base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from protocols import mqtt

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
BACKEND_ROLE = "loyalty-backend"
ADMIN_ROLE = "dynsec-admin"
_TERMINAL_ROLE_PREFIX = "loyalty-terminal-"
#: What the plugin itself writes for a new password (mosquitto_ctrl dynsec init).
PASSWORD_ITERATIONS = 101
_SALT_BYTES = 12


class DynsecError(RuntimeError):
    """The plugin refused one or more commands; the message has its reasons."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        super().__init__(
            "the broker's dynamic security refused: "
            + "; ".join(f"{cmd}: {err}" for cmd, err in failures)
        )


Command = dict[str, Any]


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


# --- the ACLs ------------------------------------------------------------------------


def terminal_role(tid: str) -> str:
    return _TERMINAL_ROLE_PREFIX + mqtt.check_terminal_id(tid)


def terminal_acls(tid: str) -> list[dict[str, Any]]:
    """Exactly what the agent of `tid` does (agent/backend_client.py), nothing more."""
    return [
        _acl("publishClientSend", mqtt.request_topic(tid)),
        _acl("publishClientSend", mqtt.terminal_status_topic(tid)),  # and its last will
        _acl("subscribeLiteral", mqtt.response_topic(tid)),
        _acl("publishClientReceive", mqtt.response_topic(tid)),
        _acl("subscribeLiteral", mqtt.BACKEND_STATUS_FILTER),
        _acl("publishClientReceive", mqtt.BACKEND_STATUS_FILTER),
    ]


def backend_acls() -> list[dict[str, Any]]:
    """The backend's shared subscription, every terminal's responses, backend presence
    (its own and its peers'), and the terminals' presence for operators."""
    responses = f"{mqtt.PREFIX}/terminal/+/resp"
    statuses = f"{mqtt.PREFIX}/terminal/+/status"
    return [
        _acl("subscribeLiteral", mqtt.SHARED_REQUEST_FILTER),
        _acl("publishClientReceive", mqtt.REQUEST_FILTER),
        _acl("publishClientSend", responses),
        _acl("publishClientSend", mqtt.BACKEND_STATUS_FILTER),
        _acl("subscribeLiteral", mqtt.BACKEND_STATUS_FILTER),
        _acl("publishClientReceive", mqtt.BACKEND_STATUS_FILTER),
        _acl("subscribeLiteral", statuses),
        _acl("publishClientReceive", statuses),
    ]


def admin_acls() -> list[dict[str, Any]]:
    """The administrator only talks to the plugin: it reads and writes no loyalty topic."""
    pattern = "$CONTROL/dynamic-security/#"
    return [
        _acl("publishClientSend", pattern),
        _acl("publishClientReceive", pattern),
        _acl("subscribePattern", pattern),
    ]


#: Everything not granted by a role is refused (the plugin's own default lets any
#: client receive what it may subscribe to; we grant receiving explicitly too).
DEFAULT_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


# --- commands ------------------------------------------------------------------------


def new_password() -> str:
    """A broker password: 32 random bytes, URL-safe base64 (safe in TOML and on a shell)."""
    # never a leading '-': a password given on a command line must not read as an option
    while True:
        password = secrets.token_urlsafe(32)
        if not password.startswith("-"):
            return password


def create_terminal(tid: str, password: str) -> list[Command]:
    """The terminal's own role, then its client (user name = terminal id) holding it."""
    role = terminal_role(tid)
    return [
        {"command": "createRole", "rolename": role, "acls": terminal_acls(tid)},
        {
            "command": "createClient",
            "username": tid,
            "password": _check_password(password),
            "textname": f"loyalty terminal {tid}",
            "roles": [{"rolename": role}],
        },
    ]


def delete_terminal(tid: str) -> list[Command]:
    return [
        {"command": "deleteClient", "username": mqtt.check_terminal_id(tid)},
        {"command": "deleteRole", "rolename": terminal_role(tid)},
    ]


def disable_client(username: str) -> list[Command]:
    """Refuses the client's logins; the plugin also closes its open connections."""
    return [{"command": "disableClient", "username": username}]


def set_client_password(username: str, password: str) -> list[Command]:
    """A new password (a lost agent configuration); open connections stay."""
    return [{"command": "setClientPassword", "username": username,
             "password": _check_password(password)}]


def enable_client(username: str) -> list[Command]:
    return [{"command": "enableClient", "username": username}]


def create_backend(username: str, password: str) -> list[Command]:
    if not username or _looks_like_terminal(username):
        # a terminal id as the backend's name would collide with a terminal's login
        raise ValueError(f"backend user name {username!r} must not look like a terminal id")
    return [
        {"command": "createRole", "rolename": BACKEND_ROLE, "acls": backend_acls()},
        {
            "command": "createClient",
            "username": username,
            "password": _check_password(password),
            "textname": "loyalty backend",
            "roles": [{"rolename": BACKEND_ROLE}],
        },
    ]


def delete_backend(username: str) -> list[Command]:
    return [
        {"command": "deleteClient", "username": username},
        {"command": "deleteRole", "rolename": BACKEND_ROLE},
    ]


def set_default_access() -> list[Command]:
    acls = [{"acltype": k, "allow": v} for k, v in DEFAULT_ACCESS.items()]
    return [{"command": "setDefaultACLAccess", "acls": acls}]


def list_clients() -> list[Command]:
    return [{"command": "listClients", "verbose": True}]


def get_client(username: str) -> list[Command]:
    return [{"command": "getClient", "username": username}]


def undo(command: Command) -> Command | None:
    """The command that takes back a successful create (to leave nothing half made)."""
    if command["command"] == "createClient":
        return {"command": "deleteClient", "username": command["username"]}
    if command["command"] == "createRole":
        return {"command": "deleteRole", "rolename": command["rolename"]}
    return None


def _looks_like_terminal(username: str) -> bool:
    try:
        mqtt.check_terminal_id(username)
    except mqtt.SchemaError:
        return False
    return True


def _check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < 16:
        raise ValueError("a broker password must be a string of at least 16 characters")
    return password


# --- the wire ------------------------------------------------------------------------


def encode_commands(commands: list[Command], correlation: str) -> tuple[bytes, list[str]]:
    """The payload, and the correlation data given to each command (`{correlation}:{i}`)."""
    tagged, tags = [], []
    for i, cmd in enumerate(commands):
        tag = f"{correlation}:{i}"
        tagged.append({**cmd, "correlationData": tag})
        tags.append(tag)
    return json.dumps({"commands": tagged}, separators=(",", ":")).encode(), tags


@dataclass(frozen=True, slots=True)
class Answer:
    command: str
    correlation: str | None
    error: str | None
    data: dict[str, Any] | None


def decode_responses(payload: bytes) -> list[Answer]:
    """The answers in one response message; an unreadable message reads as none."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return []
    items = doc.get("responses") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        data = item.get("data")
        out.append(
            Answer(
                command=str(item.get("command")),
                correlation=item.get("correlationData"),
                error=item.get("error"),
                data=data if isinstance(data, dict) else None,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class ClientInfo:
    username: str
    disabled: bool
    roles: tuple[str, ...]


def clients_of(answer: Answer) -> list[ClientInfo]:
    """The clients of a verbose `listClients` answer."""
    items = (answer.data or {}).get("clients", [])
    return [_client(c) for c in items if isinstance(c, dict)]


def client_of(answer: Answer) -> ClientInfo:
    return _client((answer.data or {}).get("client", {}))


def _client(doc: dict[str, Any]) -> ClientInfo:
    roles = tuple(r.get("rolename", "") for r in doc.get("roles", []) if isinstance(r, dict))
    return ClientInfo(str(doc.get("username")), bool(doc.get("disabled", False)), roles)


# --- the plugin's file ---------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """The `password`, `salt` and `iterations` of a client in dynamic-security.json."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PASSWORD_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PASSWORD_ITERATIONS,
    }


def initial_config(admin_username: str, admin_password: str) -> dict[str, Any]:
    """A dynamic-security.json with one administrator and every default refused: the
    broker starts with it, and everything else is created through the plugin's topic."""
    if not admin_username:
        raise ValueError("the administrator needs a user name")
    return {
        "clients": [
            {
                "username": admin_username,
                "textName": "dynamic security administrator",
                **hash_password(_check_password(admin_password)),
                "roles": [{"rolename": ADMIN_ROLE}],
            }
        ],
        "roles": [{"rolename": ADMIN_ROLE, "acls": admin_acls()}],
        "groups": [],
        "defaultACLAccess": dict(DEFAULT_ACCESS),
    }
