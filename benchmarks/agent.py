"""Agent benchmark: inquiry latency, journal durable write, resident memory, and the floor.

Runs a private Mosquitto, the real backend and the real agent (on a pseudo-terminal),
all on 127.0.0.1, and prints each figure beside its reference from the same run:

- inquiry latency, last byte of the request frame -> last byte of the response frame,
  p50/p99, against the wire time of the same two frames at 115200 baud;
- the floor: a bare paho request/response through the same broker plus one durable
  SQLite commit (synchronous=FULL), p50/p99;
- the journal's durable write of an advice with 10,000 entries in it, against a plain
  append + fsync of the same record;
- the agent's resident memory after 10,000 purchase advices;
- inquiry latency with `--metrics` served and scraped 5 times a second (Prometheus
  scrapes every 15 s or so) against the same agent without metrics, in alternating runs.

    python benchmarks/agent.py [--inquiries 500] [--advices 10000]
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.journal import Journal  # noqa: E402
from agent.storage import _line  # noqa: E402
from demo.mosquitto import Mosquitto, free_port  # noqa: E402
from protocols import framing, iso8583, mac, messages  # noqa: E402

KEY_HEX = "000102030405060708090a0b0c0d0e0f"
KEY = bytes.fromhex(KEY_HEX)
TID, MID = "T0000001", "M00000000000001"
PHONE = "09121234567"
BAUD = 115200


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(x: float) -> str:
    return f"{x * 1000:8.3f} ms"


class Pty:
    """The terminal end: frames out, ACKs in, and the reverse (protocols.framing)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.decoder = framing.FrameDecoder()
        self.frames: list[bytes] = []

    def _pump(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], timeout)
        return os.read(self.master, 65536) if ready else b""

    def exchange(self, message: bytes, timeout: float = 5.0) -> tuple[bytes, float, int, int]:
        """Send a request, wait for ACK and the response; (response, latency, sizes)."""
        frame = framing.build_frame(message)
        os.write(self.master, frame)
        t0 = time.perf_counter()
        acked = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self._pump(0.5)
            t1 = time.perf_counter()
            for ev in self.decoder.feed(data):
                if isinstance(ev, framing.Control) and ev.byte == framing.ACK:
                    acked = True
                elif isinstance(ev, framing.Frame):
                    os.write(self.master, bytes([framing.ACK]))
                    if not acked:
                        raise RuntimeError("response before ACK")
                    return ev.message, t1 - t0, len(frame), len(framing.build_frame(ev.message))
        raise TimeoutError("no response from the agent")


def header(stan: int) -> messages.Header:
    now = datetime.now(UTC)
    return messages.Header.at(now, now, stan, TID, MID)


def signed(req: object) -> bytes:
    return mac.sign(req.to_fields(), KEY)  # type: ignore[attr-defined]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    # MALLOC_ARENA_MAX=1 as the systemd unit sets it (deploy/systemd/loyalty-agent@.service)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "1"}
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=f, stdin=subprocess.DEVNULL, env=env,
                                cwd=REPO, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_floor(port: int, work: Path, n: int) -> list[float]:
    """A bare paho request/response through the broker plus one durable SQLite commit."""
    db = sqlite3.connect(work / "floor.db", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE r (k TEXT PRIMARY KEY, v TEXT)")

    def client(name: str) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
        c.on_socket_open = lambda cl, u, s: s.setsockopt(6, 1, 1)  # TCP_NODELAY
        return c

    ready = threading.Event()
    server, requester = client("floor-server"), client("floor-client")

    def serve(cl: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        db.execute("BEGIN")
        db.execute("INSERT INTO r VALUES (?, ?)", (uuid.uuid4().hex, m.payload.decode()))
        db.execute("COMMIT")
        cl.publish("floor/resp", m.payload, qos=1)

    server.on_message = serve
    server.on_connect = lambda cl, u, f, rc, p: cl.subscribe("floor/req", 1)
    server.on_subscribe = lambda *a: ready.set()
    got = threading.Event()
    requester.on_message = lambda cl, u, m: got.set()
    sub_ready = threading.Event()
    requester.on_connect = lambda cl, u, f, rc, p: cl.subscribe("floor/resp", 1)
    requester.on_subscribe = lambda *a: sub_ready.set()
    for c in (server, requester):
        c.connect("127.0.0.1", port)
        c.loop_start()
    ready.wait(10)
    sub_ready.wait(10)
    out = []
    payload = b'{"v":1,"type":"inquiry","body":{"gross":1500000,"phone":"09121234567"}}'
    for _ in range(n):
        got.clear()
        t0 = time.perf_counter()
        requester.publish("floor/req", payload, qos=1)
        if not got.wait(5):
            raise TimeoutError("floor response lost")
        out.append(time.perf_counter() - t0)
    for c in (server, requester):
        c.disconnect()
        c.loop_stop()
    db.close()
    return out


def bench_journal(work: Path, n_existing: int, n: int) -> tuple[list[float], list[float]]:
    """Durable advice write with n_existing entries, against append+fsync of that record."""
    journal = Journal(work / "bench-journal.log")
    body = {"stan": "000001", "transmitted_at": "1123194005", "local_date": "1123",
            "local_time": "231005", "occurred_at": "2026-11-23T19:40:05.000Z",
            "amount": 1480000, "gross": 1500000, "rrn": "123456789012", "auth_code": "A1B2C3",
            "bank_code": "00", "quote_id": "Q0123456789abcdef", "phone": PHONE, "card": None}
    resp = bytes(120)
    for i in range(n_existing):
        journal.record(f"{TID}:0220:{i:06d}:X{i}", "0220", time.time(), response=resp,
                       forward=("advice", {**body, "stan": f"{i % 1000000:06d}"}),
                       stan=f"{i % 1000000:06d}", rrn=f"{i:012d}")
    ours = []
    for i in range(n):
        key = f"{TID}:0220:{i:06d}:Y{i}"
        t0 = time.perf_counter()
        journal.record(key, "0220", time.time(), response=resp, forward=("advice", body),
                       stan=f"{i:06d}", rrn=f"R{i:011d}")
        ours.append(time.perf_counter() - t0)
    journal.close()
    record = {"t": "entries", "i": "10001", "d": {"key": key, "mti": "0220", "at": time.time(),
              "resp": resp.hex(), "fwd": {"type": "advice", "body": body},
              "stan": "000001", "rrn": "R00000000001"}}
    plain = []
    with open(work / "plain.log", "ab") as f:
        for _ in range(n):
            t0 = time.perf_counter()
            f.write(_line(record))
            f.flush()
            os.fsync(f.fileno())
            plain.append(time.perf_counter() - t0)
    return ours, plain


def bench_metrics(broker: str, work: Path, n: int, rounds: int = 4) -> dict[bool, list[float]]:
    """Inquiry latencies of fresh agents without and with metrics (scraped), alternating."""
    import urllib.request

    out: dict[bool, list[float]] = {False: [], True: []}
    stan = 500_000
    for rnd in range(rounds):
        for metrics in ((False, True) if rnd % 2 == 0 else (True, False)):
            term = Pty()
            port = free_port()
            extra = ["--metrics", f"127.0.0.1:{port}"] if metrics else []
            agent = start([sys.executable, "-m", "agent", "run", "--serial", term.path,
                           "--broker", broker, "--terminal-id", TID, "--merchant-id", MID,
                           "--mac-key", KEY_HEX, "--journal", str(work / f"m{rnd}{metrics}.log"),
                           "--advice-wait", "0", "--log-level", "WARNING", *extra],
                          work / f"agent-m{rnd}{metrics}.log")
            done = threading.Event()
            scrapes = [0]

            def scrape(port: int = port, done: threading.Event = done,
                       scrapes: list[int] = scrapes) -> None:
                while not done.wait(0.2):
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                    timeout=2) as r:
                            r.read()
                        scrapes[0] += 1
                    except OSError:
                        pass

            scraper = threading.Thread(target=scrape, daemon=True)
            if metrics:
                scraper.start()
            try:
                deadline = time.monotonic() + 30
                while True:
                    stan += 1
                    try:
                        raw, *_ = term.exchange(iso8583.encode(
                            messages.NetworkRequest(header(stan), "301").to_fields()), 0.5)
                    except TimeoutError:
                        term.decoder.reset()
                        raw = b""
                    if raw and "ST002ON" in iso8583.decode(raw).get("48", ""):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("the agent never came online (metrics run)")
                    time.sleep(0.1)
                for i in range(n + 20):
                    stan += 1
                    req = messages.InquiryRequest(header(stan), 1_500_000, phone=PHONE)
                    raw, dt, *_ = term.exchange(signed(req))
                    if iso8583.decode(raw)["39"] != "00":
                        raise RuntimeError("inquiry not approved (metrics run)")
                    if i >= 20:
                        out[metrics].append(dt)
            finally:
                done.set()
                stop(agent)
                os.close(term.master)
                os.close(term.slave)
            if metrics and scrapes[0] == 0:
                raise RuntimeError("the metrics were never scraped")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inquiries", type=int, default=500)
    ap.add_argument("--advices", type=int, default=10_000)
    ap.add_argument("--journal-entries", type=int, default=10_000)
    args = ap.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker").start()
        term = Pty()
        # the terminal registered in the new database's club, as an operator would
        from backend.migrations import DEFAULT_CLUB

        for command in (["migrate"], ["terminal", "add", TID, "--merchant-id", MID, "--club",
                                      DEFAULT_CLUB, "--branch", "main"]):  # fmt: skip
            subprocess.run([sys.executable, "-m", "backend", *command, "--db",
                            str(work / "backend.db")], check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL)  # fmt: skip
        backend = start([sys.executable, "-m", "backend", "run", "--broker", broker.address,
                         "--db", str(work / "backend.db"), "--log-level", "WARNING"],
                        work / "backend.log")
        agent = start([sys.executable, "-m", "agent", "run", "--serial", term.path, "--broker",
                       broker.address, "--terminal-id", TID, "--merchant-id", MID,
                       "--mac-key", KEY_HEX, "--journal", str(work / "journal.log"),
                       "--advice-wait", "0", "--log-level", "WARNING"], work / "agent.log")
        try:
            stan = 0

            def next_stan() -> int:
                nonlocal stan
                stan += 1
                return stan

            deadline = time.monotonic() + 30
            while True:
                try:
                    raw, *_ = term.exchange(iso8583.encode(
                        messages.NetworkRequest(header(next_stan()), "301").to_fields()), 0.5)
                except TimeoutError:  # the agent has not opened the line yet
                    term.decoder.reset()
                    raw = b""
                if raw and "ST002ON" in iso8583.decode(raw).get("48", ""):
                    break
                if time.monotonic() > deadline:
                    sys.stderr.write((work / "agent.log").read_text()[-3000:])
                    sys.stderr.write((work / "backend.log").read_text()[-3000:])
                    raise RuntimeError("the backend never came online for the agent")
                time.sleep(0.1)
            raw, *_ = term.exchange(signed(messages.EnrollmentRequest(header(next_stan()), PHONE)))
            assert iso8583.decode(raw)["39"] == "00"

            lat, wire = [], []
            for i in range(args.inquiries + 20):
                req = messages.InquiryRequest(header(next_stan()), 1_500_000, phone=PHONE)
                raw, dt, n_req, n_resp = term.exchange(signed(req))
                code = iso8583.decode(raw)["39"]
                if code != "00":
                    raise RuntimeError(f"inquiry answered {code}")
                if i >= 20:  # warm-up excluded
                    lat.append(dt)
                    wire.append((n_req + n_resp) * 10 / BAUD)
            floor = bench_floor(broker.port, work, args.inquiries)
            wire_t = statistics.median(wire)

            rss_idle = rss_mb(agent.pid)
            t0 = time.monotonic()
            for _ in range(args.advices):
                req = messages.PurchaseAdvice(header(next_stan() % 1_000_000), 1_000,
                                              f"{stan:012d}", "A1B2C3", "00", 1_000, phone=PHONE)
                raw, *_ = term.exchange(signed(req))
                assert iso8583.decode(raw)["39"] == "00"
            advice_s = time.monotonic() - t0
            rss = rss_mb(agent.pid)
            stop(agent)
            with_metrics = bench_metrics(broker.address, work, args.inquiries)
        finally:
            stop(agent)
            stop(backend)
            broker.stop()
            os.close(term.master)
            os.close(term.slave)
        ours, plain = bench_journal(work, args.journal_entries, 500)
        # the journal's file on disk, per entry (an advice with its answer and body)
        disk_per_entry = (work / "bench-journal.log").stat().st_size / (args.journal_entries + 500)

    p50, p99 = pct(lat, 50), pct(lat, 99)
    f50, f99 = pct(floor, 50), pct(floor, 99)
    print(f"inquiry latency through agent+Mosquitto+backend ({len(lat)} inquiries, pty):")
    print(f"  p50 {ms(p50)}   p99 {ms(p99)}")
    print(f"  wire time of the two frames at {BAUD} baud: {ms(wire_t)}")
    print(f"  p99 / wire time = {p99 / wire_t:6.1%}   (goal < 10 %)")
    print("floor: bare paho request/response + one durable SQLite commit:")
    print(f"  p50 {ms(f50)}   p99 {ms(f99)}")
    print(f"  agent p99 / floor p99 = {p99 / f99:5.2f}x   (goal <= 3x);"
          f"  p50 / floor p50 = {p50 / f50:5.2f}x")
    j50, j99 = pct(ours, 50), pct(ours, 99)
    a50, a99 = pct(plain, 50), pct(plain, 99)
    print(f"journal durable write of an advice, {args.journal_entries} entries already in it:")
    print(f"  journal  p50 {ms(j50)}   p99 {ms(j99)}")
    print(f"  append+fsync of the same record  p50 {ms(a50)}   p99 {ms(a99)}")
    print(f"  ratio p50 {j50 / a50:5.2f}x   (goal <= 2x)")
    print(f"  journal file on disk: {disk_per_entry:,.0f} bytes per advice entry")
    print(f"agent resident memory after {args.advices} purchase advices: {rss:6.1f} MB "
          f"(goal < 40 MB); after start-up and {args.inquiries} inquiries: {rss_idle:6.1f} MB;"
          f" {args.advices / advice_s:,.0f} advices/s through the pty")
    n50, n99 = pct(with_metrics[False], 50), pct(with_metrics[False], 99)
    m50, m99 = pct(with_metrics[True], 50), pct(with_metrics[True], 99)
    print(f"inquiry latency, fresh agents in alternating runs ({len(with_metrics[False])} each):")
    print(f"  without metrics  p50 {ms(n50)}   p99 {ms(n99)}")
    print(f"  with --metrics, scraped 5/s  p50 {ms(m50)}   p99 {ms(m99)}")
    print(f"  with / without: p50 {m50 / n50:5.2f}x   p99 {m99 / n99:5.2f}x   (goal: within noise)")
    print(f"total {time.monotonic() - started:5.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
