"""Exponential backoff, once for every retry loop (forwarder, SMS worker, serial reopen).

Pure timing: it says how long to wait and never sleeps, so each loop keeps its own clock
and the rule itself is testable without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """`initial` after the first failure, times `factor` after each further one, at most
    `maximum`. `failure()`/`reset()` keep the count for a loop; `delay(n)` is the same rule
    for a count kept elsewhere (the SMS outbox stores its attempts)."""

    initial: float = 0.5
    maximum: float = 60.0
    factor: float = 2.0
    failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.factor < 1:
            raise ValueError(
                f"backoff needs 0 < initial <= maximum and factor >= 1, got initial "
                f"{self.initial!r}, maximum {self.maximum!r}, factor {self.factor!r}"
            )

    def delay(self, failures: int) -> float:
        """The wait after `failures` failures in a row (1 or fewer: `initial`)."""
        steps = max(failures - 1, 0)
        try:
            return min(self.maximum, self.initial * self.factor**steps)
        except OverflowError:  # thousands of failures: long past the cap
            return self.maximum

    def failure(self) -> float:
        """Count one more failure; the wait before the next attempt."""
        self.failures += 1
        return self.delay(self.failures)

    def reset(self) -> None:
        """A success: the next failure waits `initial` again."""
        self.failures = 0
