"""KavenegarSender against a local HTTP server that answers as Kavenegar does, and make_sender."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from backend import store
from backend.sms import (
    FileSender,
    KavenegarSender,
    SendError,
    SmsWorker,
    enqueue,
    make_sender,
)

KEY = "5A6B7C2F3D-SECRET-KEY-0042"
PHONE = "09121234567"


@dataclass
class FakeKavenegar:
    """What the fake gateway answers next, and what it was asked."""

    mode: str = "ok"
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0


def _handler(state: FakeKavenegar) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _json(self, http_status: int, status: int, message: str) -> None:
            body = json.dumps(
                {"return": {"status": status, "message": message}, "entries": []},
                ensure_ascii=False,
            ).encode()
            self.send_response(http_status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("utf-8")))
            state.requests.append((self.path, form))
            if not self.path.startswith(f"/v1/{KEY}/"):
                self._json(403, 403, "کد شناسائی API-Key معتبر نمی باشد")
            elif state.mode == "ok":
                entries = [{"messageid": 8792343, "status": 1, "receptor": form.get("receptor")}]
                body = json.dumps(
                    {"return": {"status": 200, "message": "تایید شد"}, "entries": entries}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif state.mode == "bad_receptor":  # as Kavenegar: HTTP status = its own status
                self._json(411, 411, "شماره گیرنده پیام معتبر نمی باشد")
            elif state.mode == "no_credit_http200":
                self._json(200, 418, f"اعتبار حساب شما کافی نیست {KEY}")
            elif state.mode == "busy":
                self._json(409, 409, "سرور قادر به پاسخگوئی نیست بعدا تلاش کنید")
            elif state.mode == "5xx":
                body = b"<html><body>502 Bad Gateway</body></html>"
                self.send_response(502)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            # "slow" answers late, or not at all once released at teardown (client gone).
            elif state.mode == "slow" and not state.release.wait(10):
                self._json(200, 200, "late")

    return Handler


@pytest.fixture
def gateway() -> Iterator[FakeKavenegar]:
    state = FakeKavenegar()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def sender_for(state: FakeKavenegar, **kw: Any) -> KavenegarSender:
    return KavenegarSender(KEY, "10004346", base_url=f"http://127.0.0.1:{state.port}", **kw)


def test_send_success(gateway: FakeKavenegar) -> None:
    sender_for(gateway).send(PHONE, "خرید: ۱٬۰۰۰ ریال", "purchase")
    ((path, form),) = gateway.requests
    assert path == f"/v1/{KEY}/sms/send.json"
    assert form == {"receptor": PHONE, "sender": "10004346", "message": "خرید: ۱٬۰۰۰ ریال"}


def test_otp_uses_verify_lookup_with_a_template(gateway: FakeKavenegar) -> None:
    text = "فروشگاه ۲۴\nکد تأیید استفاده از اعتبار: ۰۴۸۲۱۳"
    sender_for(gateway, otp_template="loyalty-otp").send(PHONE, text, "otp")
    # Without a template, an OTP is an ordinary SMS.
    sender_for(gateway).send(PHONE, text, "otp")
    (path1, form1), (path2, form2) = gateway.requests
    assert path1 == f"/v1/{KEY}/verify/lookup.json"
    assert form1 == {"receptor": PHONE, "token": "048213", "template": "loyalty-otp"}
    assert path2 == f"/v1/{KEY}/sms/send.json" and form2["message"] == text


@pytest.mark.parametrize(
    ("mode", "status", "temporary"),
    [("bad_receptor", 411, False), ("no_credit_http200", 418, True), ("busy", 409, True)],
)
def test_gateway_statuses(gateway: FakeKavenegar, mode: str, status: int, temporary: bool) -> None:
    gateway.mode = mode
    with pytest.raises(SendError) as info:
        sender_for(gateway).send(PHONE, "x", "other")
    assert info.value.status == status
    assert info.value.temporary is temporary
    assert str(status) in str(info.value)
    assert KEY not in str(info.value)


def test_wrong_key_is_permanent(gateway: FakeKavenegar) -> None:
    with pytest.raises(SendError) as info:
        KavenegarSender("wrong", "1000", base_url=f"http://127.0.0.1:{gateway.port}").send(
            PHONE, "x", "other"
        )
    assert info.value.status == 403 and not info.value.temporary


def test_5xx_without_json_is_temporary(gateway: FakeKavenegar) -> None:
    gateway.mode = "5xx"
    with pytest.raises(SendError) as info:
        sender_for(gateway).send(PHONE, "x", "other")
    assert info.value.temporary and info.value.status == 502


def test_timeout_is_temporary(gateway: FakeKavenegar) -> None:
    gateway.mode = "slow"
    with pytest.raises(SendError) as info:
        sender_for(gateway, timeout=0.3).send(PHONE, "x", "other")
    assert info.value.temporary
    assert KEY not in str(info.value)


def test_refused_connection_is_temporary() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = KavenegarSender(KEY, "1000", base_url=f"http://127.0.0.1:{port}", timeout=2.0)
    with pytest.raises(SendError) as info:
        sender.send(PHONE, "x", "other")
    assert info.value.temporary
    # urllib's exception (which carries the URL, key included) is not chained.
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert KEY not in str(info.value)


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:1 x", "http://[::1", "http://h\x01"])
def test_a_malformed_url_fails_without_showing_the_key(base_url: str) -> None:
    with pytest.raises(SendError) as info:
        KavenegarSender(KEY, "1000", base_url=base_url, timeout=1.0).send(PHONE, "x", "other")
    assert KEY not in str(info.value) and not info.value.temporary
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_key_never_reaches_logs_reprs_or_the_database(
    gateway: FakeKavenegar, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On both engines: the outbox's `last_error` is written by the engine's own driver."""
    caplog.set_level(logging.DEBUG)
    sender = sender_for(gateway, timeout=0.3)
    assert KEY not in repr(sender)
    conn = store.connect(db)
    modes = ["no_credit_http200", "bad_receptor", "5xx", "slow", "busy", "ok"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    worker = SmsWorker(db, sender)
    try:
        # One SMS per answer; those that failed for now are not due again at `now`.
        for i, mode in enumerate(modes):
            with store.transaction(conn):
                enqueue(conn, key=f"k{i}", phone=PHONE, text=f"m{i}", kind="other", now=now)
            gateway.mode = mode
            worker.run_once(now)
        assert KEY not in repr(worker)
    finally:
        worker.stop()
    records = caplog.records
    assert records, "the failures were logged"
    for record in records:
        assert KEY not in record.getMessage()
        assert not record.exc_text or KEY not in record.exc_text
    errors = [e for (e,) in conn.execute("SELECT last_error FROM sms_outbox") if e]
    assert errors and all(KEY not in e for e in errors)
    assert [s for (s,) in conn.execute("SELECT status FROM sms_outbox ORDER BY id")] == [
        "pending", "failed", "pending", "pending", "pending", "sent",
    ]  # fmt: skip
    conn.close()


# --- make_sender -------------------------------------------------------------------------


def test_make_sender_defaults_to_a_file_beside_the_db(tmp_path: Path) -> None:
    sender = make_sender({}, base_dir=tmp_path)
    assert isinstance(sender, FileSender) and sender.path == tmp_path / "sms-outbox.jsonl"
    sender = make_sender({"sender": "file", "file": "out/sms.jsonl"}, base_dir=tmp_path)
    assert sender.path == tmp_path / "out" / "sms.jsonl"  # type: ignore[attr-defined]
    absolute = tmp_path / "elsewhere.jsonl"
    assert make_sender({"file": str(absolute)}, base_dir=Path("/nonexistent")).path == absolute  # type: ignore[attr-defined]


def test_receive_seconds_default_and_given() -> None:
    """How often the worker reads incoming SMS: 15 s unless `[sms] receive_seconds`."""
    from backend.sms.senders import receive_seconds

    assert receive_seconds({}) == 15.0 and receive_seconds({"receive_seconds": 1}) == 1.0
    assert isinstance(make_sender({"receive_seconds": 0.5}, base_dir=Path(".")), FileSender)


def test_make_sender_kavenegar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {
        "sender": "kavenegar",
        "kavenegar": {"api_key": KEY, "line": "10004346", "base_url": "http://127.0.0.1:9",
                      "timeout": 2, "otp_template": "otp"},
    }  # fmt: skip
    sender = make_sender(cfg, base_dir=tmp_path)
    assert isinstance(sender, KavenegarSender)
    assert (sender.line, sender.timeout, sender.otp_template) == ("10004346", 2.0, "otp")
    monkeypatch.setenv("TEST_KAVENEGAR_KEY", KEY)
    env_cfg = {"sender": "kavenegar", "kavenegar": {"api_key_env": "TEST_KAVENEGAR_KEY",
                                                    "line": 10004346}}  # fmt: skip
    sender = make_sender(env_cfg, base_dir=tmp_path)
    assert isinstance(sender, KavenegarSender) and sender.base_url == "https://api.kavenegar.com"


@pytest.mark.parametrize(
    ("cfg", "named"),
    [
        ({"sender": "smtp"}, "sms.sender"),
        ({"senders": "file"}, "sms.senders"),
        ({"file": ""}, "sms.file"),
        ({"file": 3}, "sms.file"),
        ({"receive_seconds": 0}, "sms.receive_seconds"),
        ({"receive_seconds": "5"}, "sms.receive_seconds"),
        ({"sender": "kavenegar"}, "sms.kavenegar.api_key"),
        ({"sender": "kavenegar", "kavenegar": "x"}, "sms.kavenegar"),
        ({"sender": "kavenegar", "kavenegar": {"api_key": KEY}}, "sms.kavenegar.line"),
        ({"sender": "kavenegar", "kavenegar": {"api_key": "", "line": "1"}},
         "sms.kavenegar.api_key"),
        ({"sender": "kavenegar", "kavenegar": {"api_key": KEY, "line": "1", "timeout": 0}},
         "sms.kavenegar.timeout"),
        ({"sender": "kavenegar", "kavenegar": {"api_key": KEY, "line": "1", "timeout": True}},
         "sms.kavenegar.timeout"),
        ({"sender": "kavenegar", "kavenegar": {"api_key": KEY, "line": "1", "base_url": "ftp://x"}},
         "sms.kavenegar.base_url"),
        ({"sender": "kavenegar", "kavenegar": {"api_key": KEY, "line": "1", "apikey": "x"}},
         "sms.kavenegar.apikey"),
        ({"sender": "kavenegar", "kavenegar": {"api_key_env": "NO_SUCH_VAR_4711", "line": "1"}},
         "sms.kavenegar.api_key_env"),
    ],
)  # fmt: skip
def test_make_sender_names_the_bad_key(tmp_path: Path, cfg: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")) as info:
        make_sender(cfg, base_dir=tmp_path)
    assert KEY not in str(info.value)
