"""The dashboard, terminals and SMS pages through Starlette's TestClient, on both engines:
figures equal the operator's report, every period, CSV, roles, CSRF, other clubs' ids.

Purchases are made by the backend's own Handler on registered terminals, as the service
does: club A's on T0000001, club B's on its own terminal, the same phone in both.
"""

from __future__ import annotations

import csv
import html
import io
import re
import threading
from datetime import UTC, datetime, time, timedelta

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from starlette.testclient import TestClient

from backend import report, store, store_registry
from backend.handlers import Handler
from backend.sms import outbox
from demo.mosquitto import Mosquitto
from panel import dashboard_data
from panel.presence import PresenceWatcher
from protocols import mqtt as schema
from protocols.persian import TEHRAN, ascii_digits
from tests.backend.core_helpers import advice, request, reversal
from tests.backend.engines import TEST_MERCHANT
from tests.panel.world import NOW, PHONE, Browser, World, app_for, logged_in

B_TERMINAL = "T0000099"
FIGURES = ("sales", "purchases", "basket", "members", "new", "buyers", "returning",
           "return_rate", "visits", "issued", "redeemed", "expired", "breakage")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def play(world: World) -> None:
    """Club A today: two purchases of one member and one of the second, a reversed fourth,
    a declined fifth; yesterday one. Club B today: one purchase, a failed SMS."""
    with world.conn() as conn:
        with store.transaction(conn):
            branch = store_registry.find_branch(conn, world.club_b, "main")
            assert branch is not None
            store_registry.add_terminal(conn, B_TERMINAL, TEST_MERCHANT, branch.id, NOW)
        clock = [NOW - timedelta(days=1)]
        handler = Handler(conn, clock=lambda: clock[0])

        def buy(amount: int, at: datetime, *, phone: str = PHONE, tid: str = "T0000001",
                bank: str = "00") -> object:
            clock[0] = at
            req = advice(amount=amount, phone=phone, occurred_at=_iso(at), tid=tid,
                         bank_code=bank)
            assert handler.handle(req).code == "00"
            return req

        buy(50_000, NOW - timedelta(days=1))
        buy(120_000, NOW - timedelta(hours=3))
        buy(80_000, NOW - timedelta(hours=2))
        buy(40_000, NOW - timedelta(hours=1), phone="09130000000")
        gone = buy(300_000, NOW - timedelta(minutes=30))
        buy(90_000, NOW - timedelta(minutes=20), bank="51")
        clock[0] = NOW - timedelta(minutes=10)
        assert handler.handle(reversal(gone, occurred_at=_iso(clock[0]))).code == "00"
        buy(777_000, NOW - timedelta(hours=2), tid=B_TERMINAL)
        clock[0] = NOW
        assert handler.handle(request("enroll", {"phone": "09350000001"})).code == "00"
        with store.transaction(conn):
            outbox.enqueue(conn, key="b-sms", phone=PHONE, text="club B", kind="other",
                           now=NOW, club_id=world.club_b)
            outbox.enqueue(conn, key="a-fail", phone="09127654321", text="x", kind="other",
                           now=NOW - timedelta(hours=5), club_id=world.club_a)
        # the failed one fails as the worker fails it; the others stay pending
        ids = {c.key: c.id for c in outbox.claim_due(conn, owner="w", now=NOW.timestamp(),
                                                     lease=60, limit=100)}
        assert outbox.mark_failed(conn, ids["a-fail"], owner="w", now=NOW.timestamp(),
                                  error="gateway said 418: <no>")
        outbox.release(conn, [i for k, i in ids.items() if k != "a-fail"], owner="w")


@pytest.fixture
def played(world: World) -> World:
    play(world)
    return world


def figure(page: str, key: str, prefix: str = "fig") -> str:
    found = re.search(rf'id="{prefix}-{key}">([^<]*)<', page)
    assert found, f"no {prefix}-{key} on the page"
    return found.group(1)


def number(text: str) -> int:
    return int(re.sub(r"[^0-9-]", "", ascii_digits(text)) or "0")


def today_bounds() -> tuple[datetime, datetime]:
    day = NOW.astimezone(TEHRAN).date()
    start = datetime.combine(day, time(), TEHRAN)
    return start, start + timedelta(days=1)


def test_dashboard_today_equals_the_report(played: World) -> None:
    with logged_in(played, "ali") as b:
        page = b.get("/dashboard?period=today").text
    since, until = today_bounds()
    with played.conn() as conn:
        f = report.summary(conn, since=since, until=until)
    # club B's purchase of today is in the report (it has no club), not on A's dashboard
    assert number(figure(page, "purchases")) == f.purchases - 1 == 3
    assert number(figure(page, "sales")) == f.sales - 777_000 == 120_000 + 80_000 + 40_000 + 0
    assert number(figure(page, "new")) == f.new_members == 1
    assert number(figure(page, "returning")) == f.returning_members == 1  # B's is its first
    assert number(figure(page, "buyers")) == 2
    assert number(figure(page, "issued")) == f.credit_issued - _earned_in_b(played)
    assert number(figure(page, "basket")) == 240_000 // 3
    assert figure(page, "return_rate") == "۵۰٫۰٪"  # one of the two bought again
    assert number(figure(page, "members")) == 3  # the two of the world and today's
    assert 'id="period-label"' in page and "۱۴۰۵/۰۹/۱۰" in page
    for key in FIGURES:
        figure(page, key)
        figure(page, key, "prev")
    for chart in ("sales", "purchases", "members", "tiers", "segments", "heat", "credit",
                  "intervals"):
        assert f'id="chart-{chart}"' in page
    assert page.count("<svg") == 8


def _earned_in_b(world: World) -> int:
    with world.conn() as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(l.amount), 0) FROM ledger l JOIN members m ON m.id = l.member_id "
            "WHERE m.club_id = ? AND l.kind IN ('earn', 'referral', 'welcome') AND l.at >= ?",
            (world.club_b, store.ts(today_bounds()[0]))).fetchone()
    return int(row[0])


def test_dashboard_of_a_single_club_equals_the_report_every_period(played: World) -> None:
    """Club B's owner: for each period, the dashboard's figures are the report's of B alone
    (B's purchases are the report's minus A's, computed on the raw rows here)."""
    with logged_in(played, "bita") as b:
        for kind in ("today", "week", "month", "last30"):
            page = b.get(f"/dashboard?period={kind}").text
            assert number(figure(page, "purchases")) == 1, kind
            assert number(figure(page, "sales")) == 777_000, kind
        page = b.get("/dashboard", params={"period": "range", "from": "۱۴۰۵/۰۹/۰۱",
                                           "to": "1405/09/10"}).text
    assert number(figure(page, "purchases")) == 1
    assert number(figure(page, "new")) == 0  # B's one member enrolled on 1405/08/20


def test_dashboard_periods_previous_and_bad_range(played: World) -> None:
    with logged_in(played, "ali") as b:
        week = b.get("/dashboard?period=week").text
        yesterday_purchase = number(figure(week, "purchases"))
        assert yesterday_purchase == 4  # today's three and yesterday's (same week: Sat-Tue)
        today = b.get("/dashboard?period=today").text
        assert number(figure(today, "purchases", "prev")) == 1  # yesterday's
        bad = b.get("/dashboard", params={"period": "range", "from": "1405/13/01", "to": ""})
        assert bad.status_code == 400 and 'id="e-period"' in bad.text
        assert 'aria-invalid="true"' in bad.text
        reversed_range = b.get("/dashboard", params={"period": "range", "from": "1405/09/10",
                                                     "to": "1405/09/01"})
        assert reversed_range.status_code == 400
        assert b.get("/dashboard?period=nonsense").status_code == 400


def test_dashboard_csv_is_the_table(played: World) -> None:
    with logged_in(played, "ali") as b:
        r = b.get("/dashboard/purchases.csv?period=today")
        heat = b.get("/dashboard/heat.csv?period=today")
        assert b.get("/dashboard/nothing.csv?period=today").status_code == 404
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.lstrip("\ufeff").splitlines()
    assert len(lines) == 2 and lines[1].endswith(",3")
    tuesday = next(line for line in heat.text.splitlines() if line.startswith("سه"))
    assert sum(int(x) for x in tuesday.split(",")[1:]) == 3  # 1405/09/10 is a Tuesday


def test_roles_and_another_club(played: World) -> None:
    with logged_in(played, "sara") as b:  # staff: the dashboard, not terminals or SMS
        assert b.get("/dashboard").status_code == 200
        assert b.get("/terminals").status_code == 403
        assert b.get("/sms").status_code == 403
        assert b.post("/sms/1/retry").status_code == 403
    with logged_in(played, "boss") as b:  # a provider chooses the club
        r = b.post("/club", {"club": str(played.club_b)})
        assert r.status_code == 303
        page = b.get("/dashboard").text
        assert number(figure(page, "sales")) == 777_000
        assert B_TERMINAL in b.get("/terminals").text
    anonymous = TestClient(app_for(played), base_url="http://127.0.0.1")
    for path in ("/dashboard", "/terminals", "/sms", "/dashboard/sales.csv"):
        r = anonymous.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"


def test_terminals_page(played: World) -> None:
    with played.conn() as conn, store.transaction(conn):
        store_registry.count_unknown(conn, "T7777777", TEST_MERCHANT, NOW)
        store_registry.count_unknown(conn, "T8888888", "M99999999999999", NOW)
    with logged_in(played, "ali") as b:
        page = b.get("/terminals").text
    row = re.search(r'<tr id="terminal-T0000001">(.*?)</tr>', page, re.S)
    assert row is not None and B_TERMINAL not in page
    assert "نامعلوم" in row.group(1) and 'id="broker-note"' in page  # no broker configured
    assert re.search(r'class="num purchases">۳<', row.group(1))
    assert "T7777777" in page and "T8888888" not in page  # another merchant's: not shown
    assert "گزارش نمی‌شود" in row.group(1)


def test_terminals_presence_from_a_real_broker(played: World, tmp_path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    watcher = None
    try:
        watcher = PresenceWatcher(broker.address).start()
        host, port = broker.address.rsplit(":", 1)
        agent = paho.Client(CallbackAPIVersion.VERSION2, client_id="agent-T0000001")
        agent.connect(host, int(port))
        agent.loop_start()
        agent.publish(schema.terminal_status_topic("T0000001"), schema.encode_status(True),
                      qos=1, retain=True).wait_for_publish(5)
        arrived = threading.Event()
        for _ in range(500):
            if watcher.get("T0000001") is not None:
                arrived.set()
                break
            arrived.wait(0.01)
        assert arrived.is_set() and watcher.get("T0000001").online
        agent.loop_stop()
        agent.disconnect()
        app = app_for(played)
        app.state.panel.presence = watcher
        with TestClient(app, base_url="http://127.0.0.1") as client:
            page = Browser(client, "ali").get("/terminals").text
        row = re.search(r'<tr id="terminal-T0000001">(.*?)</tr>', page, re.S)
        assert row is not None and "برخط" in row.group(1)
        assert broker.address in page
    finally:
        if watcher is not None:
            watcher.stop()
        broker.stop()


def test_sms_page_and_retry(played: World) -> None:
    with played.conn() as conn:
        (failed_id,) = [r[0] for r in conn.execute(
            "SELECT id FROM sms_outbox WHERE key = 'a-fail'").fetchall()]
        (b_id,) = [r[0] for r in conn.execute(
            "SELECT id FROM sms_outbox WHERE key = 'b-sms'").fetchall()]
    with logged_in(played, "ali") as b:
        page = b.get("/sms").text
        assert "0912*****21" in page and "09127654321" not in page  # masked
        assert "gateway said 418: &lt;no&gt;" in page  # the reason, escaped
        assert f'id="retry-{failed_id}"' in page and "club B" not in page
        audit = played.audit_rows()
        assert b.post(f"/sms/{failed_id}/retry", {"x": "1"}, token=False).status_code == 403
        assert _status(played, failed_id) == "failed" and played.audit_rows() == audit
        assert b.post(f"/sms/{b_id}/retry").status_code == 404  # club B's message
        r = b.post(f"/sms/{failed_id}/retry")
        assert r.status_code == 303 and _status(played, failed_id) == "pending"
        assert played.audit_rows() == audit + 1
        assert b.post(f"/sms/{failed_id}/retry").status_code == 303  # twice: queued once
        assert played.audit_rows() == audit + 1
        assert b.post("/sms/999999/retry").status_code == 404
        page = b.get(f"/sms?retried={failed_id}").text
        assert 'id="retried"' in page


def _status(world: World, sms_id: int) -> str:
    with world.conn() as conn:
        return str(conn.execute("SELECT status FROM sms_outbox WHERE id = ?",
                                (sms_id,)).fetchone()[0])


def _page_table(page: str, name: str) -> list[list[str]]:
    """The table beside chart `name` on the page, cells in ASCII digits."""
    section = re.search(rf'<section class="card" id="chart-{name}">(.*?)</section>', page,
                        re.S)
    assert section, f"no chart {name} on the page"
    return [[ascii_digits(html.unescape(cell)) for cell in re.findall(
        r"<t[hd]>([^<]*)</t[hd]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", section.group(1), re.S)]


@pytest.mark.parametrize("query", [
    "period=today", "period=last30", "period=range&from=1404/09/11&to=1405/09/10"])
def test_each_chart_csv_equals_its_table_on_the_page(played: World, query: str) -> None:
    """The CSV route builds its chart alone: the same numbers as the page's table, for
    daily and weekly points alike, in both languages' page (the CSV's digits are ASCII)."""
    with logged_in(played, "ali") as b:
        page = b.get(f"/dashboard?{query}")
        assert page.status_code == 200
        names = re.findall(r'<section class="card" id="chart-([a-z]+)">', page.text)
        assert names == list(dashboard_data.CHART_NAMES)
        for name in names:
            r = b.get(f"/dashboard/{name}.csv?{query}")
            assert r.status_code == 200
            got = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
            table = _page_table(page.text, name)
            assert got == table, name
            assert len(table) > 1
    # a purchase of today shows in the CSV of the page that shows it
    assert query != "period=today" or any(
        row[-1] != "0" for row in _page_table(page.text, "purchases")[1:])
