"""backend/broker_access.py against a real Mosquitto with the dynamic security plugin."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend import dynsec
from backend.broker_access import BrokerAccess, BrokerAccessError
from demo.mosquitto import Mosquitto

ADMIN = ("admin", "admin-password-for-tests")


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker", dynsec=ADMIN).start()
    try:
        yield b
    finally:
        b.stop()


def login(port: int, user: str, password: str) -> paho.ReasonCode:
    """The broker's answer to a CONNECT with these credentials (the connection is closed)."""
    got: list = []
    done = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.username_pw_set(user, password)

    def on_connect(cl: paho.Client, u: object, f: object, rc: paho.ReasonCode, p: object) -> None:
        got.append(rc)
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert done.wait(10)
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


def test_terminals_are_added_listed_disabled_and_enabled(dynsec_broker: Mosquitto) -> None:
    with BrokerAccess(dynsec_broker.address, *ADMIN) as access:
        password = access.add_terminal("T0000001")
        assert login(dynsec_broker.port, "T0000001", password).value == 0
        assert login(dynsec_broker.port, "T0000001", password + "x").is_failure
        access.disable_terminal("T0000001")
        listed = {c.username: c for c in access.clients()}
        assert listed["T0000001"] == dynsec.ClientInfo(
            "T0000001", True, ("loyalty-terminal-T0000001",))
        assert str(login(dynsec_broker.port, "T0000001", password)) == "Not authorized"
        access.enable_terminal("T0000001")
        assert access.client("T0000001").disabled is False
        assert login(dynsec_broker.port, "T0000001", password).value == 0


def test_a_new_password_replaces_the_old(dynsec_broker: Mosquitto) -> None:
    with BrokerAccess(dynsec_broker.address, *ADMIN) as access:
        old = access.add_terminal("T0000001")
        new = access.set_password("T0000001")
        with pytest.raises(dynsec.DynsecError, match="not found"):
            access.set_password("T0000009")
    assert new != old
    assert login(dynsec_broker.port, "T0000001", old).is_failure
    assert login(dynsec_broker.port, "T0000001", new).value == 0


def test_logins_survive_a_broker_restart(dynsec_broker: Mosquitto) -> None:
    with BrokerAccess(dynsec_broker.address, *ADMIN) as access:
        password = access.add_terminal("T0000001")
    dynsec_broker.restart()
    assert login(dynsec_broker.port, "T0000001", password).value == 0


def test_a_duplicate_terminal_is_refused_and_the_first_kept(dynsec_broker: Mosquitto) -> None:
    with BrokerAccess(dynsec_broker.address, *ADMIN) as access:
        password = access.add_terminal("T0000001")
        with pytest.raises(dynsec.DynsecError, match="already exists"):
            access.add_terminal("T0000001")
        assert access.client("T0000001").roles == ("loyalty-terminal-T0000001",)
        assert login(dynsec_broker.port, "T0000001", password).value == 0


def test_a_refused_add_leaves_nothing_behind(dynsec_broker: Mosquitto) -> None:
    with BrokerAccess(dynsec_broker.address, *ADMIN) as access:
        # a login of that name made by hand: the role is created, the client refused ...
        access.apply([{"command": "createClient", "username": "T0000003",
                       "password": "x" * 20}])
        with pytest.raises(dynsec.DynsecError, match="createClient"):
            access.add_terminal("T0000003")
        # ... and the role taken back
        (answer,) = access.run([{"command": "getRole",
                                 "rolename": dynsec.terminal_role("T0000003")}])
        assert answer.error is not None and "not found" in answer.error.lower()
        assert access.client("T0000003").roles == ()


def test_removing_a_terminal_deletes_its_login(dynsec_broker: Mosquitto) -> None:
    with BrokerAccess(dynsec_broker.address, *ADMIN) as access:
        password = access.add_terminal("T0000001")
        access.remove_terminal("T0000001")
        assert "T0000001" not in {c.username for c in access.clients()}
    assert login(dynsec_broker.port, "T0000001", password).is_failure


def test_a_wrong_admin_password_is_a_clear_error(dynsec_broker: Mosquitto) -> None:
    with pytest.raises(BrokerAccessError, match="refused the administrator 'admin'"):
        BrokerAccess(dynsec_broker.address, "admin", "wrong-password-here").open()


def test_a_terminal_login_cannot_administer(dynsec_broker: Mosquitto) -> None:
    with BrokerAccess(dynsec_broker.address, *ADMIN) as access:
        password = access.add_terminal("T0000001")
    with pytest.raises(BrokerAccessError, match="not an administrator"):
        BrokerAccess(dynsec_broker.address, "T0000001", password).open()


def test_a_broker_without_the_plugin_is_a_clear_error(broker: Mosquitto) -> None:
    # anonymous broker, no plugin: nothing ever answers on the control topic
    access = BrokerAccess(broker.address, "admin", "whatever", timeout=1.0).open()
    try:
        with pytest.raises(BrokerAccessError, match="does not load the dynamic security"):
            access.clients()
    finally:
        access.close()


def test_nothing_listening_is_a_clear_error(tmp_path: Path) -> None:
    from demo.mosquitto import free_port

    with pytest.raises(BrokerAccessError, match="cannot reach the broker"):
        BrokerAccess(f"127.0.0.1:{free_port()}", *ADMIN).open()


def test_a_file_made_by_mosquitto_ctrl_gets_our_strict_defaults(tmp_path: Path) -> None:
    """The production set-up: `mosquitto_ctrl dynsec init`, then secure_defaults()."""
    import shutil
    import subprocess

    ctrl = shutil.which("mosquitto_ctrl")
    if ctrl is None:
        pytest.skip("mosquitto_ctrl is not installed")
    b = Mosquitto(tmp_path / "broker", dynsec=ADMIN)
    subprocess.run([ctrl, "dynsec", "init", str(b.dynsec_file), *ADMIN], check=True,
                   capture_output=True)
    with b.start(), BrokerAccess(b.address, *ADMIN) as access:
        (before,) = access.apply([{"command": "getDefaultACLAccess"}])
        access.secure_defaults()
        (after,) = access.apply([{"command": "getDefaultACLAccess"}])
        password = access.add_terminal("T0000001")
    allowed = {a["acltype"]: a["allow"] for a in before.data["acls"]}
    assert allowed["publishClientReceive"] is True  # mosquitto_ctrl's default
    assert {a["acltype"]: a["allow"] for a in after.data["acls"]} == dynsec.DEFAULT_ACCESS
    b.start()
    try:
        assert login(b.port, "T0000001", password).value == 0
    finally:
        b.stop()
