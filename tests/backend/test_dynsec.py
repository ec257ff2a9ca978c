"""The dynamic security commands and file, without a broker (the broker tests are in
test_broker_access.py and tests/test_broker_acl.py)."""

from __future__ import annotations

import base64
import json

import pytest

from backend import dynsec
from protocols import mqtt

PW = "p" * 24


def test_a_terminal_gets_exactly_its_own_topics() -> None:
    acls = {(a["acltype"], a["topic"]) for a in dynsec.terminal_acls("T0000001")}
    assert acls == {
        ("publishClientSend", "loyalty/v1/terminal/T0000001/req"),
        ("publishClientSend", "loyalty/v1/terminal/T0000001/status"),
        ("subscribeLiteral", "loyalty/v1/terminal/T0000001/resp"),
        ("publishClientReceive", "loyalty/v1/terminal/T0000001/resp"),
        ("subscribeLiteral", "loyalty/v1/backend/+/status"),
        ("publishClientReceive", "loyalty/v1/backend/+/status"),
    }
    assert all(a["allow"] is True for a in dynsec.terminal_acls("T0000001"))


def test_the_backend_role_covers_what_the_service_uses() -> None:
    acls = {(a["acltype"], a["topic"]) for a in dynsec.backend_acls()}
    assert ("subscribeLiteral", mqtt.SHARED_REQUEST_FILTER) in acls
    assert ("publishClientReceive", mqtt.REQUEST_FILTER) in acls
    assert ("publishClientSend", "loyalty/v1/terminal/+/resp") in acls
    assert ("publishClientSend", mqtt.BACKEND_STATUS_FILTER) in acls
    # the backend never sends requests as a terminal
    assert not any(t == "publishClientSend" and topic.endswith("/req") for t, topic in acls)


def test_create_terminal_is_a_role_then_a_client_holding_it() -> None:
    role, client = dynsec.create_terminal("T0000001", PW)
    assert role == {"command": "createRole", "rolename": "loyalty-terminal-T0000001",
                    "acls": dynsec.terminal_acls("T0000001")}
    assert client["command"] == "createClient"
    assert client["username"] == "T0000001"
    assert client["password"] == PW
    assert client["roles"] == [{"rolename": "loyalty-terminal-T0000001"}]


@pytest.mark.parametrize("tid", ["T000001", "T00000/1", "T000000#", "+0000001", ""])
def test_a_terminal_id_that_is_not_topic_safe_is_refused(tid: str) -> None:
    with pytest.raises(mqtt.SchemaError):
        dynsec.create_terminal(tid, PW)


def test_weak_passwords_and_terminal_like_backend_names_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        dynsec.create_terminal("T0000001", "short")
    with pytest.raises(ValueError, match="terminal id"):
        dynsec.create_backend("T0000001", PW)
    assert dynsec.create_backend("loyalty-backend", PW)[1]["username"] == "loyalty-backend"


def test_new_passwords_are_long_random_and_toml_safe() -> None:
    a, b = dynsec.new_password(), dynsec.new_password()
    assert a != b and len(a) >= 40
    assert all(c.isalnum() or c in "-_" for c in a)


def test_disable_enable_list_commands() -> None:
    assert dynsec.disable_client("T0000001") == [
        {"command": "disableClient", "username": "T0000001"}]
    assert dynsec.enable_client("T0000001") == [
        {"command": "enableClient", "username": "T0000001"}]
    assert dynsec.list_clients() == [{"command": "listClients", "verbose": True}]


def test_every_command_carries_its_own_correlation() -> None:
    payload, tags = dynsec.encode_commands(dynsec.create_terminal("T0000001", PW), "abc")
    doc = json.loads(payload)
    assert tags == ["abc:0", "abc:1"]
    assert [c["correlationData"] for c in doc["commands"]] == tags
    assert [c["command"] for c in doc["commands"]] == ["createRole", "createClient"]


def test_answers_are_read_with_their_errors_and_garbage_is_none() -> None:
    payload = json.dumps({"responses": [
        {"command": "createRole", "correlationData": "x:0", "error": "Role already exists"},
        {"command": "listClients", "correlationData": "x:1", "data": {"clients": [
            {"username": "T0000001", "disabled": True,
             "roles": [{"rolename": "loyalty-terminal-T0000001"}]},
            {"username": "admin"}]}},
        "not an object",
    ]}).encode()
    role, listed = dynsec.decode_responses(payload)
    assert (role.command, role.correlation, role.error) == ("createRole", "x:0",
                                                             "Role already exists")
    assert listed.error is None
    assert dynsec.clients_of(listed) == [
        dynsec.ClientInfo("T0000001", True, ("loyalty-terminal-T0000001",)),
        dynsec.ClientInfo("admin", False, ()),
    ]
    for garbage in (b"", b"[]", b"{}", b'{"responses": 3}', b"\xff"):
        assert dynsec.decode_responses(garbage) == []


def test_undo_takes_back_creates_only() -> None:
    role, client = dynsec.create_terminal("T0000001", PW)
    assert dynsec.undo(role) == {"command": "deleteRole",
                                 "rolename": "loyalty-terminal-T0000001"}
    assert dynsec.undo(client) == {"command": "deleteClient", "username": "T0000001"}
    assert dynsec.undo(dynsec.disable_client("T0000001")[0]) is None


def test_refusals_are_named_in_the_error() -> None:
    err = dynsec.DynsecError([("createClient", "Client already exists")])
    assert "createClient: Client already exists" in str(err)


def test_password_hash_matches_what_mosquitto_ctrl_writes() -> None:
    # Written by `mosquitto_ctrl dynsec init ds.json admin adminpw` (Mosquitto 2.0.11).
    salt = base64.b64decode("t/LHFhuSxQv6aObx")
    assert dynsec.hash_password("adminpw", salt) == {
        "password": "wlaLX8x4ML7vKLXDS08MiyY4eLwjKEpu3Mw4cSo7K1PUvJpwiCo1vvmwbmLrggLASJ4dhzRjdqO"
                    "bY354sijApQ==",
        "salt": "t/LHFhuSxQv6aObx",
        "iterations": 101,
    }


def test_initial_config_has_one_admin_and_refuses_by_default() -> None:
    doc = dynsec.initial_config("admin", PW)
    (admin,) = doc["clients"]
    assert admin["username"] == "admin"
    assert admin["roles"] == [{"rolename": dynsec.ADMIN_ROLE}]
    assert PW not in json.dumps(doc)  # only the hash is stored
    assert doc["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                       "subscribe": False, "unsubscribe": True}
    topics = {a["topic"] for a in doc["roles"][0]["acls"]}
    assert topics == {"$CONTROL/dynamic-security/#"}
    with pytest.raises(ValueError):
        dynsec.initial_config("", PW)


def test_new_passwords_never_read_as_a_command_line_option() -> None:
    """A leading '-' made `--broker-password VALUE` fail now and then in the demo."""
    assert not any(dynsec.new_password().startswith("-") for _ in range(3000))
