"""The login throttle as a sans-I/O state machine: it is told the time, never reads a clock.

After `MAX_FAILURES` wrong passwords for one account, or from one address, the next login
of that account (or from that address) waits; each further failure doubles the wait, up to
`MAX_WAIT`. A key is forgotten after `FORGET_AFTER` without a failure. A right password
clears its account, not its address, so one good login cannot launder guesses at others.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_FAILURES = 5
FIRST_WAIT = 30.0
MAX_WAIT = 15 * 60.0
FORGET_AFTER = 60 * 60.0
#: Bound on the keys kept, so a flood of names or addresses cannot grow memory without end.
MAX_KEYS = 100_000


@dataclass(slots=True)
class _Record:
    failures: int
    last_failure: float


class LoginThrottle:
    def __init__(self, *, max_failures: int = MAX_FAILURES, first_wait: float = FIRST_WAIT,
                 max_wait: float = MAX_WAIT, forget_after: float = FORGET_AFTER) -> None:
        self.max_failures = max_failures
        self.first_wait = first_wait
        self.max_wait = max_wait
        self.forget_after = forget_after
        self._records: dict[tuple[str, str], _Record] = {}

    def _wait_for(self, key: tuple[str, str], now: float) -> float:
        rec = self._records.get(key)
        if rec is None:
            return 0.0
        if now - rec.last_failure >= self.forget_after:
            del self._records[key]
            return 0.0
        if rec.failures < self.max_failures:
            return 0.0
        wait = min(self.first_wait * 2 ** (rec.failures - self.max_failures), self.max_wait)
        return max(0.0, rec.last_failure + wait - now)

    def wait(self, account: str, address: str, now: float) -> float:
        """Seconds before a login of `account` from `address` may be checked; 0 = now."""
        return max(self._wait_for(("account", account), now),
                   self._wait_for(("address", address), now))

    def failed(self, account: str, address: str, now: float) -> None:
        """A wrong password (or unknown name) was given; only call when `wait()` was 0."""
        if len(self._records) >= MAX_KEYS:
            self._forget_old(now)
        for key in (("account", account), ("address", address)):
            rec = self._records.get(key)
            if rec is None or now - rec.last_failure >= self.forget_after:
                self._records[key] = _Record(1, now)
            else:
                rec.failures += 1
                rec.last_failure = now

    def succeeded(self, account: str, address: str, now: float) -> None:
        self._records.pop(("account", account), None)

    def failures(self, account: str, address: str) -> tuple[int, int]:
        """(account failures, address failures) for logs and tests."""
        a = self._records.get(("account", account))
        b = self._records.get(("address", address))
        return (a.failures if a else 0, b.failures if b else 0)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, r in self._records.items()
                    if now - r.last_failure >= self.forget_after]:
            del self._records[key]
        excess = len(self._records) - MAX_KEYS + 1
        if excess > 0:
            by_age = sorted(self._records, key=lambda k: self._records[k].last_failure)
            for key in by_age[:excess]:
                del self._records[key]
