"""Provisioning through the real parts: `loyalty-backend terminal add --agent-config`
against a Mosquitto with the dynamic security plugin makes a login that works, written
into an agent configuration the agent's own loader accepts; `terminal disable` shuts the
terminal out of the broker and the backend both; a program imported while the backend
runs is applied by it within 10 seconds."""

from __future__ import annotations

import os
import stat
import time
import tomllib
from pathlib import Path

import pytest

from agent.backend_client import BackendClient, BrokerSettings
from agent.config import build
from backend import cli, store, store_registry
from backend.broker_access import BrokerAccess
from demo.mosquitto import Mosquitto, stop_process
from tests.backend.core_helpers import (
    FakeClock,
    TestAgent,
    advice,
    phone,
    request,
    start_backend,
    wait_for_output,
    wait_until,
)
from tests.test_broker_acl import ADMIN, BACKEND_USER, Client, enroll

pytestmark = pytest.mark.slow
MID = "M00000000000001"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_terminal_add_makes_a_broker_login_and_disable_revokes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = Mosquitto(tmp_path / "broker", dynsec=ADMIN).start()
    backend = None
    try:
        with BrokerAccess(broker.address, *ADMIN) as access:
            backend_pw = access.add_backend(BACKEND_USER)
        pw_file = tmp_path / "admin-password"
        pw_file.write_text(ADMIN[1] + "\n")
        pw_file.chmod(0o600)
        cfg = tmp_path / "backend.toml"
        cfg.write_text(f'[mqtt]\nbroker = "{broker.address}"\nusername = "{BACKEND_USER}"\n'
                       f'password = "{backend_pw}"\nadmin_username = "{ADMIN[0]}"\n'
                       f'admin_password_file = "{pw_file}"\n')  # fmt: skip
        db = tmp_path / "loyalty.db"
        assert _cli(capsys, "migrate", "--db", str(db), "--config", str(cfg))[0] == 0
        agent_cfg = tmp_path / "agent.toml"
        code, out, err = _cli(capsys, "terminal", "add", "T0000005", "--merchant-id", MID,
                              "--db", str(db), "--config", str(cfg),
                              "--agent-config", str(agent_cfg))  # fmt: skip
        assert code == 0, err
        written = tomllib.loads(agent_cfg.read_text())
        assert stat.S_IMODE(agent_cfg.stat().st_mode) == 0o600
        assert f"MAC key (shown once; load it into the bank terminal): {written['mac_key']}" in out
        assert written["broker"] == broker.address and written["broker_username"] == "T0000005"
        agent_settings = build({**written, "journal": str(tmp_path / "j")})
        assert agent_settings.terminal_id == "T0000005" and agent_settings.merchant_id == MID
        # a second add of the same id: refused, and the broker login is left as it was
        code, _, err = _cli(capsys, "terminal", "add", "T0000005", "--merchant-id", MID,
                            "--db", str(db), "--config", str(cfg))  # fmt: skip
        assert code == 2 and "already registered" in err
        backend = start_backend(broker.address, db, "b1", "--config", str(cfg),
                                "--log-level", "INFO")  # fmt: skip
        wait_for_output(backend, "connected to")
        login = BrokerSettings("127.0.0.1", broker.port, "T0000005", written["broker_password"])
        agent = BackendClient(login, "T0000005", MID)
        agent.start()
        try:
            wait_until(agent.online)
            resp = enroll(agent, 1)
            assert resp is not None and resp.code == "00"
        finally:
            agent.stop()
        # disabled: the broker refuses the login, and the backend the terminal
        code, out, err = _cli(capsys, "terminal", "disable", "T0000005", "--db", str(db),
                              "--config", str(cfg))  # fmt: skip
        assert code == 0 and "broker login T0000005 disabled" in out, err
        refused = Client(broker.port, "T0000005", written["broker_password"])
        assert refused.connack.is_failure  # type: ignore[attr-defined]
        refused.close()
        conn = store.connect(db)
        try:
            assert store_registry.terminal(conn, "T0000005").enabled is False  # type: ignore[union-attr]
        finally:
            conn.close()
        assert _cli(capsys, "terminal", "enable", "T0000005", "--db", str(db),
                    "--config", str(cfg))[0] == 0  # fmt: skip
        back = Client(broker.port, "T0000005", written["broker_password"])
        assert not back.connack.is_failure  # type: ignore[attr-defined]
        back.close()
        # a broker that cannot be reached: nothing changes in the registry either
        bad = tmp_path / "bad.toml"
        bad.write_text(cfg.read_text().replace(broker.address, "127.0.0.1:9"))
        code, _, err = _cli(capsys, "terminal", "disable", "T0000005", "--db", str(db),
                            "--config", str(bad))  # fmt: skip
        assert code == 2 and "nothing changed" in err
        conn = store.connect(db)
        try:
            assert store_registry.terminal(conn, "T0000005").enabled is True  # type: ignore[union-attr]
        finally:
            conn.close()
    finally:
        if backend is not None:
            stop_process(backend)
        broker.stop()


def test_a_running_backend_applies_a_new_program_within_10_seconds(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "loyalty.db"
    backend = start_backend(broker.address, db, "b1", "--log-level", "INFO")
    agent = TestAgent(broker.address)
    try:
        agent.wait_for(lambda: agent.status.get("b1") is True)
        clock = FakeClock()
        assert agent.ask(request("enroll", {"phone": phone(1)})).code == "00"
        first = agent.ask(advice(amount=1_000_000, occurred_at=clock.iso(), phone=phone(1)))
        assert first.body["earned"] == 30_000  # the configuration's 3 %
        prog = tmp_path / "p.toml"
        prog.write_text('[[program.tiers]]\nname = "bronze"\nmin_spend = 0\n'
                        "cashback_percent = 9\n")  # fmt: skip
        code, _, err = _cli(capsys, "program", "import", "فروشگاه", str(prog), "--db", str(db))
        assert code == 0, err
        imported = time.monotonic()
        # idle: no request comes; the backend notices by itself, within 10 s
        wait_for_output(backend, "program version 1 applied", timeout=10)
        assert time.monotonic() - imported < 10
        later = agent.ask(advice(amount=1_000_000, occurred_at=clock.iso(), phone=phone(1)))
        assert later.body["earned"] == 90_000
    finally:
        stop_process(backend)
        agent.close()
    assert os.path.exists(db)


def test_a_terminal_of_club_a_never_moves_club_b_money(tmp_path: Path) -> None:
    """Through the real broker with each terminal's own login and the real backend: T1
    (club A) forges a request naming T2 (club B) on its own topic: dropped at the topic
    check; its own requests naming B's member or B's purchase touch nothing of B's."""
    from datetime import UTC, datetime

    from protocols import mqtt
    from tests.backend.core_helpers import reversal

    t1, t2, mid = "T0000001", "T0000002", MID
    db = tmp_path / "loyalty.db"
    now = datetime.now(UTC)
    conn = store.connect(db)
    try:
        with store.transaction(conn):
            b = store_registry.add_club(conn, "Club B", now)
            main = store_registry.find_branch(conn, b.id, "main")
            assert main is not None
            store_registry.add_terminal(conn, t2, mid, main.id, now)
    finally:
        conn.close()
    broker = Mosquitto(tmp_path / "broker", dynsec=ADMIN).start()
    backend = None
    try:
        with BrokerAccess(broker.address, *ADMIN) as access:
            logins = {t1: access.add_terminal(t1), t2: access.add_terminal(t2)}
            backend_pw = access.add_backend(BACKEND_USER)
        cfg = tmp_path / "backend.toml"
        cfg.write_text(f'[mqtt]\nusername = "{BACKEND_USER}"\npassword = "{backend_pw}"\n')
        backend = start_backend(broker.address, db, "b1", "--config", str(cfg),
                                "--log-level", "INFO")  # fmt: skip
        wait_for_output(backend, "connected to")
        clock = FakeClock(now)
        agent_b = BackendClient(BrokerSettings("127.0.0.1", broker.port, t2, logins[t2]), t2, mid)
        agent_b.start()
        try:
            wait_until(agent_b.online)
            enrol = request("enroll", {"phone": phone(1)}, tid=t2)
            assert agent_b.request("enroll", enrol.key, enrol.body,
                                   time.monotonic() + 15).code == "00"  # type: ignore[union-attr]  # fmt: skip
            bought = advice(amount=1_000_000, occurred_at=clock.iso(), phone=phone(1), tid=t2)
            answer = agent_b.request("advice", bought.key, bought.body, time.monotonic() + 15)
            assert answer is not None and answer.body["balance"] == 30_000
        finally:
            agent_b.stop()
        a = Client(broker.port, t1, logins[t1])
        try:
            assert not a.subscribe(mqtt.response_topic(t1))[0].is_failure
            # the body says T2, the topic is T1's own: dropped by the topic check
            forged = reversal(bought, occurred_at=clock.iso(), tid=t2)
            a.publish(mqtt.request_topic(t1), forged.to_json())
            # T1's own requests: B's purchase is not T1's to reverse, B's member not A's
            mine = reversal(bought, occurred_at=clock.iso(), tid=t1)
            a.publish(mqtt.request_topic(t1), mine.to_json())
            probe = request("inquiry", {"phone": phone(1), "gross": 100_000}, tid=t1)
            a.publish(mqtt.request_topic(t1), probe.to_json())
            a.wait(lambda: any(probe.id.encode() in p for _, p in a.got))
            answers = {r.id: r for r in (mqtt.decode_response(p) for _, p in a.got)}
            assert forged.id not in answers
            assert answers[mine.id].code == "12" and answers[probe.id].code == "14"
        finally:
            a.close()
        conn = store.connect(db)
        try:
            m = store.member_by_phone(conn, phone(1), club_id=b.id)
            assert m is not None
            from backend import ledger

            assert ledger.balance(conn, m.id) == 30_000
            assert store.reversal(conn, bought.key) is None
            assert [(u.terminal_id, u.count) for u in
                    store_registry.list_unknown_terminals(conn)] == []  # fmt: skip
        finally:
            conn.close()
    finally:
        if backend is not None:
            stop_process(backend)
        broker.stop()
