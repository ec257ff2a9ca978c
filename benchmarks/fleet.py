"""A fleet of simulated terminals at a peak hour, then a burst, against 1 and 2 backends.

    python benchmarks/fleet.py [--terminals 2000] [--think 40] [--seconds 60] [--burst 30]
                               [--db sqlite|postgresql|both] [--processes 1,2] [--quick]

Every terminal is its own MQTT connection with its own terminal id (the clients spread
over a few worker processes) and its own regular customers, most of them members
(`provision_terminals`, the one place that decides which terminals and customers exist).
A sale is one of a realistic mix: an inquiry then the advice with its quote (half), an
advice alone (a quarter; some customers are not members), an enrolment, a reversal of the
terminal's last sale; and now and then the agent resends a request already answered.

Phases, each counted on its own and only from the moment the last terminal connected:
- peak: every terminal one sale every `--think` seconds on average (exponential; the
  default 40 s is a busy shop at its peak hour: ~50 sales/s, ~80 requests/s for 2,000
  terminals);
- burst: every terminal sells again the moment it has its answer: the ceiling, with
  2,000 requests in flight.
Prints, per engine and number of backend processes: terminals connected at once (and any
that dropped), requests/s, round-trip p50/p99, errors, and the backends' CPU per request.

Two backend processes on one SQLite file (docs/backend.md, "Several processes on one
SQLite file"): SQLite lets one process write at a time, so a second process adds no
throughput; the backends take a file lock beside the database so that they hand the
write lock over at once instead of through SQLite's sleeping busy handler (which starved
one of them: answers after 11 s and timeouts). Several processes belong on PostgreSQL.
`--quick` (200 terminals, 2 s think time, 10 s peak, 5 s burst) is a smoke run.

Every terminal is registered first (`terminal add`'s store functions). `--clubs N` runs
each configuration with the terminals in one club and then spread over N clubs (each
with a program version of its own), interleaved `--repeat` times, and prints the
backends' CPU per request of both and their ratio: what resolving terminal -> branch ->
club costs; and the same in one process without MQTT (steadier on a loaded machine).
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing as mp
import os
import random
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from backend import store, store_registry  # noqa: E402
from backend.program import Program  # noqa: E402
from demo.mosquitto import Mosquitto, stop_process  # noqa: E402
from demo.postgres import Postgres  # noqa: E402
from protocols import mqtt as schema  # noqa: E402

PHASES = ("peak", "burst")
#: answers that are a correct outcome of the mix (unknown member, not enough credit, ...)
FINE = frozenset({"00", "14", "51", "12", "13"})
CLIENTS_PER_WORKER = 500
IDLE_SECONDS = 5.0


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))] if s else float("nan")


# --- the fleet -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TerminalSpec:
    tid: str
    merchant_id: str
    members: tuple[str, ...]  # regular customers enrolled in the club
    strangers: tuple[str, ...]  # customers who are not (yet) members


def provision_terminals(
    db: str, count: int, *, clubs: int = 1, seed: int = 1
) -> list[TerminalSpec]:
    """`count` terminals, each with its own id and regular customers, registered round robin
    in `clubs` clubs (the first is the database's own; each other one has a program of its
    own, as a provider's clubs have); the members among the customers enrolled in their
    terminal's club. In one transaction, before the backends start."""
    rng = random.Random(seed)
    specs: list[TerminalSpec] = []
    numbers = iter(rng.sample(range(10**7), count * 12))
    for i in range(count):
        phones = [f"0935{next(numbers):07d}" for _ in range(12)]
        specs.append(
            TerminalSpec(
                tid=f"F{i:07d}",
                merchant_id="M00000000000001",
                members=tuple(phones[:8]),
                strangers=tuple(phones[8:]),
            )
        )
    tier = Program().tiers[0].name
    now = datetime.now(UTC)
    conn = store.connect(db)
    try:
        with store.transaction(conn):
            branches: list[tuple[int, int]] = []  # (club, branch)
            for n in range(clubs):
                if n == 0:
                    club = min(store_registry.list_clubs(conn), key=lambda c: c.id)
                else:
                    club = store_registry.add_club(conn, f"club-{n:03d}", now)
                    # a version of its own, with the default's rules: the same work per
                    # request, so that only the registry differs between the runs
                    store_registry.add_program(conn, club.id, "[program]\nhold_seconds = 300\n",
                                               "fleet", now)  # fmt: skip
                branch = store_registry.find_branch(conn, club.id, "main")
                assert branch is not None
                branches.append((club.id, branch.id))
            for i, spec in enumerate(specs):
                club_id, branch_id = branches[i % clubs]
                store_registry.add_terminal(conn, spec.tid, spec.merchant_id, branch_id, now)
                for phone in spec.members:
                    store.insert_member(conn, phone=phone, referrer_id=None, tier=tier,
                                        now=now, club_id=club_id)  # fmt: skip
    finally:
        conn.close()
    return specs


def lookup_share(work: Path, terminals: int, clubs: int, n: int = 2000) -> tuple[float, float]:
    """In one process, on SQLite, no MQTT: (CPU seconds per request handled one per
    transaction, CPU seconds of its registry part: the generation read and the terminal's
    resolution, done alone as often). Steadier than the fleet's figures on a loaded
    machine."""
    from backend.handlers import Handler

    db = str(work / f"share-{clubs}.db")
    specs = provision_terminals(db, terminals, clubs=clubs)
    conn = store.connect(db)
    try:
        h = Handler(conn, Program())
        reqs = []
        for i in range(n):
            spec = specs[i % terminals]
            key = schema.idempotency_key(spec.tid, "0100", f"{i % 999_999 + 1:06d}", "1201120000")
            phone = spec.members[i % len(spec.members)]
            reqs.append(schema.Request("inquiry", f"r{i}", key, spec.tid, spec.merchant_id,
                                       {"phone": phone, "gross": 100_000}))  # fmt: skip
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
        with_registry = time.process_time() - t0
        t0 = time.process_time()
        for _ in reqs[200:]:
            with store.transaction(conn):
                pass
        bare = time.process_time() - t0
        return per_request, max(0.0, with_registry - bare) / (n - 200)
    finally:
        conn.close()


# --- one terminal's agent ------------------------------------------------------------------


class Terminal:
    """One terminal's agent: one MQTT connection, one request in flight at a time.

    Driven by its worker's event loop (no threads: a worker's few hundred terminals share
    one thread and one epoll, so the clients' own cost stays small beside the backend's).
    """

    def __init__(self, address: str, spec: TerminalSpec) -> None:
        self.spec, self.tid = spec, spec.tid
        self.rng = random.Random(spec.tid)
        self.stan = self.rng.randrange(1, 900_000)
        self.ready = False
        self.dropped = False
        self.answer: schema.Response | None = None
        self.last_advice: schema.Request | None = None
        self.customers = list(spec.members) + list(spec.strangers)
        # the request in flight: (request, sent at, what counts as a correct answer, phase)
        self.pending: tuple[schema.Request, float, frozenset[str] | None, int] | None = None
        self.first: tuple[schema.Request, schema.Response] | None = None  # of this sale
        self.arrived: list[Terminal] = []  # the worker's: terminals with an answer to take
        self.index = 0  # in the worker's list
        host, port = address.rsplit(":", 1)
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.tid, protocol=mqtt.MQTTv5)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.connect(host, int(port), keepalive=120)

    def _on_connect(self, c, u, flags, reason, props) -> None:
        if not reason.is_failure:
            c.subscribe(schema.response_topic(self.tid), qos=1)

    def _on_subscribe(self, *args: object) -> None:
        self.ready = True

    def _on_disconnect(self, c, u, flags, reason, props) -> None:
        self.dropped = self.dropped or self.ready

    def _on_message(self, c, u, msg) -> None:
        self.answer = schema.decode_response(msg.payload)
        if self.pending is not None:
            self.arrived.append(self)

    def send(self, req: schema.Request, expect: frozenset[str] | None, phase: int) -> None:
        """`expect`: the codes of a correct answer; None: the same answer as the first."""
        self.answer = None
        self.pending = (req, time.perf_counter(), expect, phase)
        self.c.publish(schema.request_topic(self.tid), req.to_json(), qos=1)

    def req(self, type: str, body: dict, mti: str) -> schema.Request:
        self.stan = self.stan % 999_999 + 1
        stamp = time.strftime("%m%d%H%M%S", time.gmtime())
        return schema.Request(
            type=type, id=f"{self.tid}-{self.stan}", terminal_id=self.tid,
            key=schema.idempotency_key(self.tid, mti, f"{self.stan:06d}", stamp),
            merchant_id=self.spec.merchant_id, body=body,
        )  # fmt: skip

    def advice(self, amount: int, gross: int, **who: str) -> schema.Request:
        body = {
            "stan": f"{self.stan:06d}", "transmitted_at": "1201120000", "local_date": "1201",
            "local_time": "120000", "occurred_at": schema.utc_now_iso(), "amount": amount,
            "gross": gross, "rrn": f"{self.stan:012d}", "auth_code": "A1B2C3", "bank_code": "00",
            **who,
        }  # fmt: skip
        return self.req("advice", body, "0220")

    def first_request(self) -> schema.Request:
        """A customer at the counter: what the agent asks first."""
        r = self.rng.random()
        gross = self.rng.randrange(50_000, 3_000_000)
        if r < 0.5:
            phone = self.rng.choice(self.spec.members)
            return self.req("inquiry", {"phone": phone, "gross": gross}, "0100")
        if r < 0.75:
            return self.advice(gross, gross, phone=self.rng.choice(self.customers))
        if r < 0.85 or self.last_advice is None:
            return self.req("enroll", {"phone": self.rng.choice(self.customers)}, "0100")
        last = self.last_advice
        body = {"stan": last.body["stan"], "transmitted_at": "1201121000",
                "occurred_at": schema.utc_now_iso(), "amount": last.body["amount"],
                "rrn": last.body["rrn"], "original_key": last.key}  # fmt: skip
        self.last_advice = None
        return self.req("reversal", body, "0420")

    def start_sale(self, phase: int) -> None:
        self.first = None
        self.send(self.first_request(), FINE, phase)

    def answered(self, resp: schema.Response | None) -> bool:
        """The answer to the request in flight (None: none came): whether it was correct;
        sends the sale's next request, if it has one."""
        assert self.pending is not None
        req, _, expect, phase = self.pending
        self.pending = None
        if expect is None:  # a resend: the same answer as the first time
            assert self.first is not None
            return resp is not None and resp.body == self.first[1].body
        ok = resp is not None and resp.code in expect
        if resp is None:
            return False
        if self.first is None:
            self.first = (req, resp)
            if req.type == "inquiry" and resp.code == "00" and resp.body.get("quote_id"):
                b = resp.body
                self.send(self.advice(b["net"], b["gross"], quote_id=b["quote_id"]),
                          frozenset({"00"}), phase)  # fmt: skip
                return ok
            if req.type == "advice" and resp.code == "00":
                self.last_advice = req
        elif req.type == "advice" and resp.code == "00":
            self.last_advice = req
        if self.rng.random() < 0.05:  # the agent resends an answered request
            self.first = (req, resp)
            self.send(req, None, phase)
        return ok


@dataclass
class PhaseStats:
    requests: int = 0
    errors: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # what the errors were
    latencies: list[float] = field(default_factory=list)


def _worker(
    address: str,
    specs: list[TerminalSpec],
    think: float,
    go: mp.Event,
    start: mp.Value,
    durations: tuple[float, float],
    out: mp.Queue,
    timeout: float = 30.0,
) -> None:
    """A few hundred terminals in one thread: epoll over their sockets, a timer heap."""
    terms = [Terminal(address, spec) for spec in specs]
    sel = selectors.DefaultSelector()
    by_fd: dict[int, Terminal] = {}
    for t in terms:
        sock = t.c.socket()
        by_fd[sock.fileno()] = t
        sel.register(sock, selectors.EVENT_READ, t)

    def pump(wait: float) -> None:
        for key, _ in sel.select(wait):
            key.data.c.loop_read()
        for t in terms:
            if t.c.want_write():
                t.c.loop_write()

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(t.ready for t in terms):
        pump(0.05)
    out.put(("connected", sum(t.ready for t in terms)))
    while not go.is_set():
        pump(0.05)
        for t in terms:
            t.c.loop_misc()
    t0 = start.value  # CLOCK_MONOTONIC: one clock for every process of the machine
    ends = (t0 + durations[0], t0 + durations[0] + durations[1])
    stats = [PhaseStats(), PhaseStats()]
    rng = random.Random(specs[0].tid if specs else "none")
    timers = [(t0 + rng.random() * think, i) for i in range(len(terms))]
    heapq.heapify(timers)
    next_misc = next_timeouts = time.monotonic() + 5
    arrived: list[Terminal] = []
    for i, t in enumerate(terms):
        t.arrived, t.index = arrived, i
    while True:
        now = time.monotonic()
        if now >= ends[1] and not any(t.pending for t in terms):
            break
        if now >= ends[1] + timeout + 5:
            break
        while timers and timers[0][0] <= now:
            _, i = heapq.heappop(timers)
            if now < ends[1]:
                terms[i].start_sale(0 if now < ends[0] else 1)
        wait = min(0.05, max(0.0, (timers[0][0] - now) if timers else 0.05))
        pump(wait)
        now = time.monotonic()
        due = arrived[:]
        arrived.clear()
        if now >= next_timeouts:
            next_timeouts = now + 1
            due += [t for t in terms if t.pending and now - t.pending[1] >= timeout]
        for t in due:
            if t.pending is None:
                continue
            phase, sent = t.pending[3], t.pending[1]
            resp, kind = t.answer, t.pending[0].type
            ok = t.answered(resp)
            s = stats[phase]
            s.requests += 1
            s.latencies.append(time.perf_counter() - sent)
            if not ok:
                s.errors += 1
                s.kinds[f"{kind} {'timeout' if resp is None else resp.code}"] += 1
            if t.pending is None:  # the sale is over: the next customer
                gap = t.rng.expovariate(1 / think) if now < ends[0] else 0.0
                heapq.heappush(timers, (min(now + gap, max(now, ends[0])), t.index))
        if now >= next_misc:
            next_misc = now + 5
            for t in terms:
                t.c.loop_misc()
    dropped = sum(t.dropped for t in terms)
    for t in terms:
        t.c.disconnect()
    out.put(("done", dropped, [(s.requests, s.errors, s.latencies, s.kinds) for s in stats]))


# --- one run -------------------------------------------------------------------------------


def _kinds(kinds: Counter[str]) -> str:
    """The errors by request type and what came back (timeout: no answer in 30 s)."""
    if not kinds:
        return ""
    return " (" + ", ".join(f"{k}: {n}" for k, n in kinds.most_common(4)) + ")"


def _cpu_pressure() -> str:
    """How loaded the machine was: the share of the last minute some task waited for a CPU."""
    try:
        some = Path("/proc/pressure/cpu").read_text().split("\n")[0].split()
        return f"CPU pressure {float(some[2].split('=')[1]):.0f}% (avg60)"
    except (OSError, IndexError, ValueError):
        return f"load average {os.getloadavg()[0]:.1f}"


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far (Linux /proc); gone ones count 0."""
    total = 0
    for pid in pids:
        try:
            fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields_[11]) + int(fields_[12])
    return total / os.sysconf("SC_CLK_TCK")


def _family(root: int) -> list[int]:
    """`root` and its children: a PostgreSQL server's postmaster and its backends."""
    pids = [root]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == root:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def run_fleet(
    engine: str,
    processes: int,
    terminals: int,
    think: float,
    durations: tuple[float, float],
    work: Path,
    clubs: int = 1,
) -> float:
    """One run; the backends' CPU seconds per request (both phases)."""
    here = work / f"{engine}-{processes}-{clubs}-{time.monotonic_ns()}"
    here.mkdir()
    os.chmod(here, 0o755)
    broker = Mosquitto(here / "broker").start()
    pg = Postgres(workdir=here / "pg", durable=True) if engine == "postgresql" else None
    backends: list[subprocess.Popen] = []
    workers: list[mp.Process] = []
    try:
        if pg is not None:
            (here / "pg").mkdir()
            pg.start()
            db = pg.create_database("fleet")
        else:
            db = str(here / "fleet.db")
        store.connect(db).close()
        specs = provision_terminals(db, terminals, clubs=clubs)
        cfg = here / "fleet.toml"
        cfg.write_text(f'[sms]\nsender = "file"\nfile = "{here / "sms.jsonl"}"\n')
        for k in range(processes):
            backends.append(subprocess.Popen(
                [sys.executable, "-m", "backend", "run", "--broker", broker.address, "--db", db,
                 "--instance", f"fleet{k}", "--config", str(cfg), "--log-level", "WARNING"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(here / f"b{k}.log").open("w"),
                start_new_session=True,
            ))  # fmt: skip
        _wait_online(broker.address, [f"fleet{k}" for k in range(processes)])
        n_workers = max(1, -(-terminals // CLIENTS_PER_WORKER))
        q: mp.Queue = mp.Queue()
        go = mp.Event()
        start = mp.Value("d", 0.0)
        workers = [
            mp.Process(
                target=_worker,
                args=(broker.address, specs[i::n_workers], think, go, start, durations, q),
            )
            for i in range(n_workers)
        ]
        t_connect = time.monotonic()
        for w in workers:
            w.start()
        connected = 0
        for _ in workers:
            connected += q.get(timeout=300)[1]
        connect_s = time.monotonic() - t_connect
        # the backends' own upkeep with every terminal connected and none selling
        idle0 = _cpu_seconds([b.pid for b in backends])
        time.sleep(IDLE_SECONDS)
        idle = (_cpu_seconds([b.pid for b in backends]) - idle0) / IDLE_SECONDS
        # counted from here: every terminal connected, nothing of the connecting measured
        start.value = time.monotonic() + 0.2
        cpu0 = _cpu_seconds([b.pid for b in backends])
        server = _family(pg.proc.pid) if pg is not None and pg.proc is not None else []
        server0 = _cpu_seconds(server)
        go.set()
        cpu_at_burst = None
        dropped = 0
        phases = [PhaseStats(), PhaseStats()]
        finished = 0
        while finished < n_workers:
            left = start.value + durations[0] - time.monotonic()
            if cpu_at_burst is None and left <= 0:
                cpu_at_burst = _cpu_seconds([b.pid for b in backends])
            try:
                msg = q.get(timeout=max(0.05, left) if cpu_at_burst is None else 600)
            except Exception:  # queue.Empty: the peak phase just ended
                continue
            finished += 1
            dropped += msg[1]
            for stats, (n, errors, lat, kinds) in zip(phases, msg[2], strict=True):
                stats.requests += n
                stats.errors += errors
                stats.kinds.update(kinds)
                stats.latencies += lat
        cpu_end = _cpu_seconds([b.pid for b in backends])
        server_cpu = _cpu_seconds(server) - server0
        cpu_at_burst = cpu0 if cpu_at_burst is None else cpu_at_burst
        cpu = (cpu_at_burst - cpu0, cpu_end - cpu_at_burst)
        head = f"{engine:<10} {processes} backend(s), {clubs} club(s)"
        print(
            f"{head}: {connected:,} of {terminals:,} terminals connected at once "
            f"(in {connect_s:.0f} s), {dropped} dropped; backends idle {idle:.0%} of a core; "
            f"{_cpu_pressure()}",
            flush=True,
        )
        for name, stats, seconds, used in zip(PHASES, phases, durations, cpu, strict=True):
            rate = stats.requests / seconds
            per = used / stats.requests * 1e6 if stats.requests else float("nan")
            print(
                f"{'':<10}   {name:<5}: {rate:7,.0f} requests/s ({stats.requests:,} in "
                f"{seconds:.0f} s), p50 {pct(stats.latencies, 50) * 1000:7.1f} ms, "
                f"p99 {pct(stats.latencies, 99) * 1000:7.1f} ms, errors {stats.errors}"
                f"{_kinds(stats.kinds)}, "
                f"backend CPU {per:,.0f} us/request ({used / seconds:.0%} of a core)",
                flush=True,
            )
        if server:
            n = sum(p.requests for p in phases)
            print(
                f"{'':<10}   PostgreSQL server CPU (both phases): {server_cpu / n * 1e6:,.0f} "
                f"us/request",
                flush=True,
            )
        handled = sum(p.requests for p in phases)
        return (cpu_end - cpu0) / handled if handled else float("nan")
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
        for b in backends:
            stop_process(b)
        broker.stop()
        if pg is not None:
            pg.stop()


def _wait_online(address: str, instances: list[str], timeout: float = 60.0) -> None:
    """Until every backend has published itself online (it has subscribed by then)."""
    online: set[str] = set()
    seen = threading.Event()

    def on_message(c, u, msg) -> None:
        name = msg.topic.split("/")[-2]
        if schema.decode_status(msg.payload):
            online.add(name)
        if online >= set(instances):
            seen.set()

    host, port = address.rsplit(":", 1)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.on_connect = lambda c, *a: c.subscribe(schema.BACKEND_STATUS_FILTER, qos=1)
    c.connect(host, int(port))
    c.loop_start()
    try:
        if not seen.wait(timeout):
            raise SystemExit(f"backends not online after {timeout:.0f} s: {sorted(online)}")
    finally:
        c.disconnect()
        c.loop_stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--terminals", type=int)
    ap.add_argument("--think", type=float, help="mean seconds between a terminal's sales")
    ap.add_argument("--seconds", type=float, help="length of the peak phase")
    ap.add_argument("--burst", type=float, help="length of the burst phase")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--processes", default="1,2", help="backend processes, e.g. 1,2")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 200 terminals")
    ap.add_argument("--clubs", type=int, default=1,
                    help="also run with the terminals spread over this many clubs")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=1, help="with --clubs: runs of each, interleaved")
    a = ap.parse_args(argv)
    if a.clubs < 1 or a.repeat < 1:
        ap.error("--clubs and --repeat must be at least 1")
    terminals = a.terminals or (200 if a.quick else 2000)
    think = a.think or (2.0 if a.quick else 40.0)
    durations = (a.seconds or (10.0 if a.quick else 60.0), a.burst or (5.0 if a.quick else 30.0))
    counts = [int(n) for n in a.processes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    os.chmod(work, 0o755)  # PostgreSQL runs as its own user when we are root
    print(
        f"{terminals:,} terminals, one sale each every {think:g} s on average "
        f"(offered ~{terminals / think:,.0f} sales/s) for {durations[0]:g} s, "
        f"then a {durations[1]:g} s burst with no think time; machine load "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    try:
        engines = ("sqlite", "postgresql") if a.db == "both" else (a.db,)
        if a.clubs > 1:
            for clubs in (1, a.clubs):
                per, part = lookup_share(work, terminals, clubs)
                print(f"in-process, {clubs} club(s): {per * 1e6:,.0f} us CPU per inquiry, "
                      f"of which the registry {part * 1e6:.1f} us ({part / per * 100:.2f} %)",
                      flush=True)  # fmt: skip
        for engine in engines:
            for processes in counts:
                if a.clubs == 1:
                    run_fleet(engine, processes, terminals, think, durations, work)
                    continue
                # interleaved, so that a load change on the machine hits both alike
                ones, manys = [], []
                for _ in range(a.repeat):
                    ones.append(run_fleet(engine, processes, terminals, think, durations, work))
                    manys.append(run_fleet(engine, processes, terminals, think, durations, work,
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
