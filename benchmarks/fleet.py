"""A fleet of simulated terminals at a peak hour, against 1 and 2 backend processes.

    python benchmarks/fleet.py [--terminals 2000] [--seconds 60] [--db sqlite|postgresql|both]
                               [--quick] [--clubs 200]

Each terminal is its own MQTT connection with its own terminal id (clients spread over a
few worker processes), and runs a realistic mix in a loop with think time between sales:
inquiry then advice with the quote (half), an advice alone (a card the club does not
know of, a quarter), an enrolment, a reversal of its last sale, and repeats of a request
already answered (the agent resending). Prints, per engine and number of backend
processes: terminals connected at once, requests/s, p50/p99 round trip, errors.
`--quick` (200 terminals, 15 s) is a smoke run.

Every terminal is registered first (`terminal add`'s store functions). `--clubs N` runs
each configuration twice in the same run, the terminals in one club and then spread over
N clubs (each with its own program version), and prints the backends' CPU time per
request of both and their ratio: what resolving terminal -> branch -> club costs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from backend import store, store_registry  # noqa: E402
from demo.mosquitto import Mosquitto, stop_process  # noqa: E402
from demo.postgres import Postgres  # noqa: E402
from protocols import mqtt as schema  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))] if s else float("nan")


class Terminal:
    """One terminal's agent: one MQTT connection, one request in flight at a time."""

    def __init__(self, address: str, tid: str, rng: random.Random) -> None:
        self.tid, self.rng = tid, rng
        self.stan = rng.randrange(1, 900_000)
        self.done = threading.Event()
        self.answer: schema.Response | None = None
        self.last_advice: schema.Request | None = None
        host, port = address.rsplit(":", 1)
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=tid, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.connect(host, int(port), keepalive=120)
        self.c.subscribe(schema.response_topic(tid), qos=1)
        self.c.loop_start()

    def _on_message(self, c, u, msg) -> None:
        self.answer = schema.decode_response(msg.payload)
        self.done.set()

    def ask(
        self, req: schema.Request, timeout: float = 30.0
    ) -> tuple[schema.Response | None, float]:
        self.done.clear()
        t0 = time.perf_counter()
        self.c.publish(schema.request_topic(self.tid), req.to_json(), qos=1)
        ok = self.done.wait(timeout)
        return (self.answer if ok else None), time.perf_counter() - t0

    def req(self, type: str, body: dict, mti: str) -> schema.Request:
        self.stan = self.stan % 999_999 + 1
        stamp = time.strftime("%m%d%H%M%S", time.gmtime())
        return schema.Request(
            type=type, id=f"{self.tid}-{self.stan}", terminal_id=self.tid,
            key=schema.idempotency_key(self.tid, mti, f"{self.stan:06d}", stamp),
            merchant_id="M00000000000001", body=body,
        )  # fmt: skip

    def advice(self, amount: int, gross: int, **who: str) -> schema.Request:
        body = {
            "stan": f"{self.stan:06d}", "transmitted_at": "1201120000", "local_date": "1201",
            "local_time": "120000", "occurred_at": schema.utc_now_iso(), "amount": amount,
            "gross": gross, "rrn": f"{self.stan:012d}", "auth_code": "A1B2C3", "bank_code": "00",
            **who,
        }  # fmt: skip
        return self.req("advice", body, "0220")


def _sale(t: Terminal, phone: str) -> list[tuple[schema.Request, bool]]:
    """One customer at this terminal: the requests, and whether each is a repeat."""
    r = t.rng.random()
    gross = t.rng.randrange(50_000, 3_000_000)
    if r < 0.1:
        return [(t.req("enroll", {"phone": phone}, "0100"), False)]
    if r < 0.6:
        return [(t.req("inquiry", {"phone": phone, "gross": gross}, "0100"), False)]
    if r < 0.85:
        return [(t.advice(gross, gross, phone=phone), False)]
    if r < 0.95 and t.last_advice is not None:
        body = {"stan": t.last_advice.body["stan"], "transmitted_at": "1201121000",
                "occurred_at": schema.utc_now_iso(), "amount": t.last_advice.body["amount"],
                "rrn": t.last_advice.body["rrn"], "original_key": t.last_advice.key}  # fmt: skip
        return [(t.req("reversal", body, "0420"), False)]
    return [(t.req("enroll", {"phone": phone}, "0100"), False)]


def _worker(address: str, tids: list[str], seconds: float, think: float, out: mp.Queue) -> None:
    rng = random.Random(tids[0])
    terms = [Terminal(address, tid, random.Random(tid)) for tid in tids]
    out.put(("connected", len(terms)))
    lat: list[float] = []
    errors = requests = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(t: Terminal) -> None:
        nonlocal errors, requests
        phones = [f"0935{rng.randrange(10**7):07d}" for _ in range(3)]
        time.sleep(t.rng.random() * think)
        while time.monotonic() < stop:
            phone = t.rng.choice(phones)
            for req, _ in _sale(t, phone):
                resp, dt = t.ask(req)
                with lock:
                    requests += 1
                    lat.append(dt)
                    errors += resp is None or resp.code not in ("00", "14", "51", "12")
                if resp is None:
                    continue
                if req.type == "inquiry" and resp.code == "00" and resp.body.get("quote_id"):
                    b = resp.body
                    adv = t.advice(b["net"], b["gross"], quote_id=b["quote_id"])
                    resp2, dt = t.ask(adv)
                    with lock:
                        requests += 1
                        lat.append(dt)
                        errors += resp2 is None or resp2.code != "00"
                    t.last_advice = adv
                elif req.type == "advice":
                    t.last_advice = req
                if t.rng.random() < 0.05:  # the agent resends an answered request
                    again, dt = t.ask(req)
                    with lock:
                        requests += 1
                        lat.append(dt)
                        errors += again is None or again.body != resp.body
            time.sleep(t.rng.expovariate(1 / think))

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in terms]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in terms:
        t.c.disconnect()
        t.c.loop_stop()
    out.put(("done", requests, errors, lat))


def register(db: str, tids: list[str], clubs: int) -> None:
    """The fleet's terminals, round robin over `clubs` clubs (the first is the database's
    own; each other one with a program of its own, as a provider's clubs have)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    conn = store.connect(db)
    try:
        with store.transaction(conn):
            branches = []
            for n in range(clubs):
                if n == 0:
                    club = store_registry.list_clubs(conn)[0]
                else:
                    club = store_registry.add_club(conn, f"club-{n:03d}", now)
                    store_registry.add_program(conn, club.id, "[program]\nwelcome_credit = "
                                               f"{n}\n", "fleet", now)  # fmt: skip
                branch = store_registry.find_branch(conn, club.id, "main")
                assert branch is not None
                branches.append(branch.id)
            for i, tid in enumerate(tids):
                store_registry.add_terminal(conn, tid, "M00000000000001",
                                            branches[i % clubs], now)  # fmt: skip
    finally:
        conn.close()


def lookup_share(work: Path, terminals: int, clubs: int, n: int = 2000) -> tuple[float, float]:
    """In one process, on SQLite: (CPU seconds per request handled one per transaction,
    CPU seconds of its registry part: the generation read and the terminal's resolution,
    done alone as often). Steadier than the fleet's figures on a loaded machine."""
    from backend.handlers import Handler
    from backend.program import Program

    db = str(work / f"share-{clubs}.db")
    tids = [f"F{i:07d}" for i in range(terminals)]
    register(db, tids, clubs)
    conn = store.connect(db)
    try:
        h = Handler(conn, Program())
        reqs = []
        for i in range(n):
            tid = tids[i % terminals]
            key = schema.idempotency_key(tid, "0100", f"{i % 999_999 + 1:06d}", "1201120000")
            body = {"phone": f"0935{i % 500:07d}"}
            kind = "enroll" if i < 500 else "inquiry"
            if kind == "inquiry":
                body["gross"] = 100_000
            reqs.append(schema.Request(kind, f"r{i}", key, tid, "M00000000000001", body))
        for r in reqs[:200]:  # warm up
            h.handle(r)
        t0 = time.process_time()
        for r in reqs[200:]:
            h.handle(r)
        per_request = (time.process_time() - t0) / (n - 200)
        t0 = time.process_time()
        for r in reqs[200:]:
            with store.transaction(conn):
                h.registry.refresh(conn)
                h.registry.resolve(r.terminal_id, r.merchant_id)
        with_txn = time.process_time() - t0
        t0 = time.process_time()
        for _ in reqs[200:]:
            with store.transaction(conn):
                pass
        bare = time.process_time() - t0
        return per_request, max(0.0, with_txn - bare) / (n - 200)
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_fleet(engine: str, processes: int, terminals: int, seconds: float, think: float,
              work: Path, clubs: int = 1) -> float:  # fmt: skip
    """One run; the backends' CPU seconds per request."""
    tag = f"{engine}-{processes}-{clubs}"
    broker = Mosquitto(work / f"broker-{tag}").start()
    pg = Postgres(workdir=work / f"pg-{tag}", durable=True) if engine != "sqlite" else None
    backends: list[subprocess.Popen] = []
    try:
        if pg is not None:
            (work / f"pg-{tag}").mkdir()
            pg.start()
            db = pg.create_database("fleet")
        else:
            db = str(work / f"fleet-{tag}.db")
        tids = [f"F{i:07d}" for i in range(terminals)]
        register(db, tids, clubs)
        cfg = work / "fleet.toml"
        cfg.write_text(f'[sms]\nsender = "file"\nfile = "{work / "sms.jsonl"}"\n')
        for k in range(processes):
            backends.append(subprocess.Popen(
                [sys.executable, "-m", "backend", "run", "--broker", broker.address, "--db", db,
                 "--instance", f"fleet{k}", "--config", str(cfg), "--log-level", "WARNING"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(work / f"b{k}.log").open("w"),
                start_new_session=True,
            ))  # fmt: skip
        time.sleep(2)  # the backends subscribe; requests before that wait in the broker
        cpu0 = sum(cpu_seconds(b.pid) for b in backends)
        n_workers = max(1, min(8, terminals // 250))
        q: mp.Queue = mp.Queue()
        workers = [
            mp.Process(target=_worker, args=(broker.address, tids[i::n_workers], seconds, think, q))
            for i in range(n_workers)
        ]
        for w in workers:
            w.start()
        connected = requests = errors = 0
        lat: list[float] = []
        t0 = time.perf_counter()
        finished = 0
        while finished < n_workers:
            msg = q.get(timeout=seconds + 300)
            if msg[0] == "connected":
                connected += msg[1]
            else:
                finished += 1
                requests += msg[1]
                errors += msg[2]
                lat += msg[3]
        dt = time.perf_counter() - t0
        for w in workers:
            w.join()
        cpu = (sum(cpu_seconds(b.pid) for b in backends) - cpu0) / max(1, requests)
        print(
            f"{engine:<10} {processes} backend(s), {clubs} club(s): "
            f"{connected:,} terminals connected, backend CPU {cpu * 1e6:,.0f} us/request, "
            f"{requests / dt:,.0f} requests/s ({requests:,} in {dt:.0f} s), "
            f"p50 {pct(lat, 50) * 1000:.1f} ms, p99 {pct(lat, 99) * 1000:.1f} ms, "
            f"errors {errors}",
            flush=True,
        )
    finally:
        for b in backends:
            stop_process(b)
        broker.stop()
        if pg is not None:
            pg.stop()
    return cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--terminals", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--think", type=float, default=20.0, help="mean seconds between sales")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="200 terminals for 15 s")
    ap.add_argument("--clubs", type=int, default=1,
                    help="also run with the terminals spread over this many clubs")  # fmt: skip
    ap.add_argument("--processes", type=int, choices=(1, 2), help="only this many backends")
    ap.add_argument("--repeat", type=int, default=1, help="with --clubs: runs of each, interleaved")
    a = ap.parse_args(argv)
    terminals = a.terminals or (200 if a.quick else 2000)
    seconds = a.seconds or (15.0 if a.quick else 60.0)
    think = 2.0 if a.quick and a.think == 20.0 else a.think
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    os.chmod(work, 0o755)  # PostgreSQL runs as its own user when we are root
    try:
        engines = ("sqlite", "postgresql") if a.db == "both" else (a.db,)
        if a.clubs > 1:
            for clubs in (1, a.clubs):
                per, part = lookup_share(work, terminals, clubs)
                print(f"in-process, {clubs} club(s): {per * 1e6:,.0f} us CPU per request, "
                      f"of which the registry {part * 1e6:.1f} us ({part / per * 100:.2f} %)",
                      flush=True)  # fmt: skip
        for engine in engines:
            for processes in (a.processes,) if a.processes else (1, 2):
                if a.clubs <= 1:
                    run_fleet(engine, processes, terminals, seconds, think, work)
                    continue
                # interleaved, so that a load change on the machine hits both alike
                ones, manys = [], []
                for _ in range(a.repeat):
                    ones.append(run_fleet(engine, processes, terminals, seconds, think, work))
                    manys.append(run_fleet(engine, processes, terminals, seconds, think, work,
                                           a.clubs))  # fmt: skip
                one, many = statistics.median(ones), statistics.median(manys)
                print(f"{engine:<10} {processes} backend(s): {a.clubs} clubs / 1 club, "
                      f"backend CPU per request (median of {a.repeat}): {many / one:.3f} "
                      f"({(many / one - 1) * 100:+.1f} %)", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
