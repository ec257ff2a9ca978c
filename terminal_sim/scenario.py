"""Scenario files (TOML): steps a cashier and customers take, and what must come of them.

Parsing and checking are pure; `run_scenario` drives a Terminal and returns one outcome
per step. See docs/terminal_sim.md for the format.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols.persian import ascii_digits
from terminal_sim.faults import FaultPlan
from terminal_sim.session import LINE_FIGURES
from terminal_sim.terminal import Exchanged, SaleResult, Terminal

_COMMON = {"expect", "faults", "name", "settle_s"}
ACTIONS = {
    "sign_on": _COMMON,
    "sign_off": _COMMON,
    "echo": _COMMON,
    "enroll": {"phone", "referrer"} | _COMMON,
    "inquiry": {"amount", "phone", "card", "redeem", "otp"} | _COMMON,
    "sale": {"amount", "phone", "card", "redeem", "otp", "otp_from_outbox", "pan", "pin",
             "bank_timeout", "id"} | _COMMON,
    "reverse": {"sale"} | _COMMON,
    "wait": {"seconds", "until_queued"} | _COMMON,
    "link_card": {"phone", "card"} | _COMMON,
}
#: Line figures that are levels, not counts: observed as they are after the step.
LEVELS = frozenset({"pending"})
_ANSWER = {"code", "note"}  # `note`: why there was no answer
_NETWORK = _ANSWER | {"status", "queued"}
#: What each action observes (besides the line figures): what `expect` may name.
OBSERVED = {
    "sign_on": _NETWORK,
    "sign_off": _NETWORK,
    "echo": _NETWORK,
    "wait": _NETWORK,
    "enroll": _ANSWER | {"new", "member_code", "balance", "display", "rl"},
    "inquiry": _ANSWER | {"otp_required", "quote", "discount", "net", "balance", "tier",
                          "display", "rl", "screen"},
    "sale": {"inquiry", "otp_asked", "bank", "advice", "advice_answered", "gross", "amount",
             "discount", "earned", "balance", "tier", "display", "receipt", "quote", "screen"},
    "reverse": _ANSWER | {"screen"},
    "link_card": {"code", "output"},
}
SUFFIXES = ("_min", "_max", "_contains")


class ScenarioError(ValueError):
    """A scenario file that does not follow the format."""


@dataclass
class Step:
    action: str
    params: dict[str, Any]
    expect: dict[str, Any]
    faults: dict[str, Any]
    name: str


@dataclass
class Scenario:
    name: str
    terminal: dict[str, Any]
    cards: list[dict[str, Any]]
    faults: dict[str, Any]
    steps: list[Step]


@dataclass
class Outcome:
    step: Step
    observed: dict[str, Any]
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def load(path: str | Path) -> Scenario:
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    try:
        return parse(doc, str(Path(path).stem))
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def parse(doc: dict[str, Any], default_name: str = "scenario") -> Scenario:
    unknown = set(doc) - {"name", "terminal", "bank", "faults", "step"}
    if unknown:
        raise ScenarioError(f"unknown top-level keys: {sorted(unknown)}")
    raw_steps = doc.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError("a scenario needs at least one [[step]]")
    for table in ("terminal", "bank", "faults"):
        if not isinstance(doc.get(table, {}), dict):
            raise ScenarioError(f"[{table}] must be a table")
    try:
        FaultPlan().update(doc.get("faults", {}))  # validate early
    except ValueError as exc:
        raise ScenarioError(f"[faults]: {exc}") from None
    _check_terminal(doc.get("terminal", {}))
    cards = doc.get("bank", {}).get("card", [])
    _check_cards(cards)
    steps = []
    for i, raw in enumerate(raw_steps, 1):
        if not isinstance(raw, dict) or "do" not in raw:
            raise ScenarioError(f"step {i}: needs `do = \"...\"`")
        action = raw["do"]
        if action not in ACTIONS:
            raise ScenarioError(f"step {i}: unknown action {action!r}; one of {sorted(ACTIONS)}")
        extra = set(raw) - ACTIONS[action] - {"do"}
        if extra:
            raise ScenarioError(f"step {i} ({action}): unknown keys {sorted(extra)}")
        if action in ("sale", "inquiry") and not isinstance(raw.get("amount"), int):
            raise ScenarioError(f"step {i} ({action}): needs an integer `amount`")
        if action == "enroll" and not isinstance(raw.get("phone"), str):
            raise ScenarioError(f"step {i} (enroll): needs `phone`")
        if action == "reverse" and not isinstance(raw.get("sale"), str):
            raise ScenarioError(f"step {i} (reverse): needs `sale` (the id of a sale step)")
        if action == "link_card" and not (isinstance(raw.get("phone"), str)
                                          and isinstance(raw.get("card"), str)):
            raise ScenarioError(f"step {i} (link_card): needs `phone` and `card` (strings)")
        for key in ("settle_s", "seconds"):
            if key in raw and (isinstance(raw[key], bool)
                               or not isinstance(raw[key], int | float) or raw[key] < 0):
                raise ScenarioError(f"step {i} ({action}): `{key}` must be a number >= 0")
        if not isinstance(raw.get("expect", {}), dict) or not isinstance(raw.get("faults", {}),
                                                                         dict):
            raise ScenarioError(f"step {i} ({action}): `expect` and `faults` are tables")
        _check_expect(raw.get("expect", {}), action,
                      f"step {i}" + (f" {raw['name']!r}" if "name" in raw else ""))
        faults = raw.get("faults", {})
        try:
            FaultPlan().update(faults)
        except ValueError as exc:
            raise ScenarioError(f"step {i} ({action}): {exc}") from None
        params = {k: v for k, v in raw.items() if k not in ("do", "expect", "faults", "name")}
        steps.append(Step(action, params, dict(raw.get("expect", {})), dict(faults),
                          str(raw.get("name", f"{i}: {action}"))))
    return Scenario(str(doc.get("name", default_name)), dict(doc.get("terminal", {})),
                    list(cards), dict(doc.get("faults", {})), steps)


def _check_expect(expect: dict[str, Any], action: str, where: str) -> None:
    """Every `expect` key names something the action observes, with a fitting value:
    checked when the file is read, before a frame is sent."""
    known = OBSERVED[action] | LINE_FIGURES
    for key, want in expect.items():
        base, suffix = key, ""
        for end in SUFFIXES:
            if key.endswith(end) and key[: -len(end)] in known:
                base, suffix = key[: -len(end)], end
                break
        if base not in known:
            raise ScenarioError(
                f"{where} ({action}): expect key {key!r} is not observed by {action}; "
                f"known: {', '.join(sorted(OBSERVED[action]))}, the line figures "
                f"({', '.join(sorted(LINE_FIGURES))}), each also with {', '.join(SUFFIXES)}")
        if suffix in ("_min", "_max") and (isinstance(want, bool)
                                           or not isinstance(want, int | float)):
            raise ScenarioError(f"{where} ({action}): expect {key!r} needs a number")
        if suffix == "_contains" and not isinstance(want, str):
            raise ScenarioError(f"{where} ({action}): expect {key!r} needs a string")


TERMINAL_KEYS = {"terminal_id": str, "merchant_id": str, "mac_key": str,
                 "echo_interval": (int, float), "advice_attempts": int}


def _check_terminal(table: dict[str, Any]) -> None:
    for key, value in table.items():
        if key not in TERMINAL_KEYS:
            raise ScenarioError(f"[terminal]: unknown key {key!r}; known: "
                                f"{', '.join(sorted(TERMINAL_KEYS))}")
        if isinstance(value, bool) or not isinstance(value, TERMINAL_KEYS[key]):
            raise ScenarioError(f"[terminal] {key}: wrong type {type(value).__name__}")
    key = table.get("mac_key")
    if key is not None and not re.fullmatch(r"[0-9A-Fa-f]{32}", key):
        raise ScenarioError("[terminal] mac_key must be 32 hex digits")
    for name, size in (("terminal_id", 8), ("merchant_id", 15)):
        if name in table and len(table[name]) != size:
            raise ScenarioError(f"[terminal] {name} must be {size} characters")


def _check_cards(cards: Any) -> None:
    if not isinstance(cards, list):
        raise ScenarioError("[[bank.card]] must be an array of tables")
    for i, card in enumerate(cards, 1):
        pan = card.get("pan") if isinstance(card, dict) else None
        if not (isinstance(pan, str) and pan.isascii() and pan.isdigit()
                and 16 <= len(pan) <= 19):
            raise ScenarioError(f"[[bank.card]] {i}: `pan` must be a string of 16-19 digits")
        unknown = set(card) - {"pan", "pin", "balance", "blocked"}
        if unknown:
            raise ScenarioError(f"[[bank.card]] {i}: unknown keys {sorted(unknown)}")


def check(expect: dict[str, Any], observed: dict[str, Any]) -> list[str]:
    """`key = value` equal, `key_min`/`key_max` bounds, `key_contains` substring."""
    failures = []
    for key, want in expect.items():
        for suffix in ("_min", "_max", "_contains", ""):
            if key.endswith(suffix) and key[: len(key) - len(suffix)] in observed:
                base = key[: len(key) - len(suffix)] if suffix else key
                break
        else:
            failures.append(f"{key}: nothing observed by that name ({sorted(observed)})")
            continue
        got = observed[base]
        if suffix == "_min":
            ok = isinstance(got, int | float) and got >= want
        elif suffix == "_max":
            ok = isinstance(got, int | float) and got <= want
        elif suffix == "_contains":
            ok = isinstance(got, str) and str(want) in got
        else:
            ok = got == want
        if not ok:
            failures.append(f"{key}: expected {want!r}, got {got!r}")
    return failures


def observe_exchange(ex: Exchanged | None) -> dict[str, Any]:
    if ex is None:
        return {"code": "none"}
    r = ex.response
    if r is None:
        return {"code": "none", "note": ex.note}
    out: dict[str, Any] = {"code": r.code}
    for attr, key in (("status", "status"), ("queued", "queued"), ("new", "new"),
                      ("member_code", "member_code"), ("balance", "balance"),
                      ("display", "display"), ("otp_required", "otp_required"),
                      ("quote_id", "quote"), ("discount", "discount"), ("net", "net"),
                      ("tier", "tier"), ("earned", "earned"), ("receipt", "rl")):
        value = getattr(r, attr, None)
        if value is not None:
            out[key] = value
    return out


def observe_sale(s: SaleResult) -> dict[str, Any]:
    inq = observe_exchange(s.inquiry) if s.inquiry else {}
    adv = observe_exchange(s.advice) if s.advice else {}
    return {
        "inquiry": inq.get("code", "none"), "otp_asked": s.otp_asked,
        "bank": s.authorisation.code, "advice": adv.get("code", "none"),
        "advice_answered": s.advice_answered, "gross": s.gross, "amount": s.amount,
        "discount": s.discount, "earned": adv.get("earned", 0),
        "balance": adv.get("balance", inq.get("balance", -1)), "tier": inq.get("tier", ""),
        "display": inq.get("display", ""), "receipt": s.receipt.text if s.receipt else "",
        "quote": s.quote_id or "",
    }


_DIGIT_RUN = re.compile(r"[0-9]{4,10}")


def otp_from_outbox(path: Path, after: int, timeout: float = 10.0) -> str | None:
    """The code of the newest one-time-code SMS in the JSON-lines outbox after byte `after`.

    The backend's file sender writes `{"phone", "kind", "text"}` per line, code last.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = path.read_bytes()[after:].decode("utf-8", "replace")
        except OSError:
            data = ""
        codes = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("kind") == "otp":
                runs = _DIGIT_RUN.findall(ascii_digits(str(record.get("text", ""))))
                if runs:
                    codes.append(runs[-1])
        if codes:
            return codes[-1]
        time.sleep(0.1)
    return None


def line_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What one step did on the line: counts as differences, levels as they are."""
    return {k: v if k in LEVELS or not isinstance(v, int) else v - before.get(k, 0)
            for k, v in after.items()}


@dataclass
class Runner:
    """Plays a scenario on a terminal. `set_faults` changes the line's fault plan.

    `backend` runs one operator command on the backend (see `backend_command`); only
    `link_card` steps need it.
    """

    terminal: Terminal
    set_faults: Callable[[dict[str, Any]], None]
    outbox: Path | None = None
    stats: Callable[[], dict[str, Any]] | None = None
    backend: Callable[[list[str]], tuple[int, str]] | None = None
    sales: dict[str, SaleResult] = field(default_factory=dict)

    def run(self, scenario: Scenario, report: Callable[[Outcome], None] | None = None,
            ) -> list[Outcome]:
        for card in scenario.cards:
            self.terminal.bank.open_account(str(card["pan"]), str(card.get("pin", "1234")),
                                            int(card.get("balance", 100_000_000)),
                                            bool(card.get("blocked", False)))
        if scenario.faults:
            self.set_faults(scenario.faults)
        outcomes = []
        for step in scenario.steps:
            # The whole step holds the line, so a periodic echo cannot take its faults or
            # blur its figures; `wait` leaves it free, since it waits for those echoes.
            holder = nullcontext() if step.action == "wait" else self.terminal.line
            with holder:
                if step.faults:
                    self.set_faults(step.faults)
                before = self.stats() if self.stats else {}
                try:
                    observed = self.play(step)
                    time.sleep(float(step.params.get("settle_s", 0)))
                    if self.stats:
                        observed.update(line_delta(before, self.stats()))
                    failures = check(step.expect, observed)
                except Exception as exc:  # a step that blows up is a failed expectation
                    observed, failures = {}, [f"step raised {type(exc).__name__}: {exc}"]
            outcome = Outcome(step, observed, failures)
            outcomes.append(outcome)
            if report:
                report(outcome)
        return outcomes

    def play(self, step: Step) -> dict[str, Any]:
        t, p = self.terminal, step.params
        if step.action == "sign_on":
            return observe_exchange(t.sign_on())
        if step.action == "sign_off":
            return observe_exchange(t.sign_off())
        if step.action == "echo":
            return observe_exchange(t.echo())
        if step.action == "enroll":
            return observe_exchange(t.enroll(p["phone"], p.get("referrer")))
        if step.action == "inquiry":
            ex = t.inquire(p["amount"], phone=p.get("phone"), card=p.get("card"),
                           redeem=p.get("redeem"), otp=p.get("otp"))
            return {**observe_exchange(ex), "screen": t.display}
        if step.action == "sale":
            return self._sale(step)
        if step.action == "reverse":
            sale = self.sales.get(p["sale"])
            if sale is None:
                raise ScenarioError(f"no earlier sale with id {p['sale']!r}")
            ex = t.reverse(sale)
            if ex is None:  # not approved or already reversed: nothing was sent
                return {"code": "refused", "screen": t.display}
            return {**observe_exchange(ex), "screen": t.display}
        if step.action == "wait":
            return self._wait(float(p.get("seconds", 0)), p.get("until_queued"))
        if step.action == "link_card":
            if self.backend is None:
                raise ScenarioError("link_card is an operator command on the backend: "
                                    "give --backend-db PATH")
            code, text = self.backend(["card", "add", p["phone"], p["card"]])
            return {"code": "00" if code == 0 else "failed", "output": text.strip()}
        raise ScenarioError(f"unknown action {step.action}")

    def _sale(self, step: Step) -> dict[str, Any]:
        p = step.params
        mark = self.outbox.stat().st_size if self.outbox and self.outbox.exists() else 0

        def otp() -> str | None:
            if p.get("otp_from_outbox"):
                if self.outbox is None:
                    raise ScenarioError("otp_from_outbox needs --outbox PATH")
                return otp_from_outbox(self.outbox, mark)
            return p.get("otp")

        if p.get("bank_timeout"):
            self.terminal.bank.timeouts += 1
        result = self.terminal.sale(p["amount"], str(p.get("pan", "6037991234567891")),
                                    str(p.get("pin", "1234")), phone=p.get("phone"),
                                    card=p.get("card"), redeem=p.get("redeem"),
                                    otp_provider=otp)
        if "id" in p:
            self.sales[str(p["id"])] = result
        return {**observe_sale(result), "screen": self.terminal.display}

    def _wait(self, seconds: float, until_queued: int | None) -> dict[str, Any]:
        """Sleep, or echo until the agent's QD falls to `until_queued` (within `seconds`)."""
        deadline = time.monotonic() + seconds
        observed: dict[str, Any] = {}
        if until_queued is None:
            time.sleep(seconds)
            return observe_exchange(self.terminal.echo())
        while True:
            observed = observe_exchange(self.terminal.echo())
            queued = observed.get("queued")
            if queued is not None and int(queued) <= int(until_queued):
                return observed
            if time.monotonic() > deadline:
                return observed
            time.sleep(0.5)


def backend_command(db: Path, config: Path | None = None, python: str | None = None,
                    ) -> Callable[[list[str]], tuple[int, str]]:
    """The backend's operator command line (`python -m backend ... --db PATH`), run as a
    process: the simulator never imports the backend."""

    def run(args: list[str]) -> tuple[int, str]:
        extra = ["--config", str(config)] if config else []
        done = subprocess.run([python or sys.executable, "-m", "backend", *args,
                               "--db", str(db), *extra],
                              capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout if done.returncode == 0 else done.stdout + done.stderr

    return run
