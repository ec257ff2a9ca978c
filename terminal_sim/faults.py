"""Fault injection on the terminal's side of the line, as a Transport wrapper.

The link driver writes each frame, and each ACK/NAK byte, with a write() of its own,
so the wrapper can tell them apart and spoil exactly the next N of a kind. Counts, not
probabilities: a scenario expects a definite outcome.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

from terminal_sim.wrapper import TransportWrapper

ACK_BYTE = b"\x06"
NAK_BYTE = b"\x15"
_NOISE = bytes(b for b in range(256) if b not in (0x02, 0x06, 0x15))


@dataclass
class FaultPlan:
    """What to spoil next. Each count is used up as the fault is applied."""

    corrupt: int = 0          # next N frames sent with a wrong LRC (the agent NAKs)
    drop_acks: int = 0        # next N ACKs we owe the agent are never written
    stall: int = 0            # next N frames stop half-way for `stall_s`, then go on
    stall_s: float = 0.4
    noise: int = 0            # next N frames are preceded by line noise
    noise_bytes: int = 16
    lost_responses: int = 0   # next N advice responses are ignored (terminal repeats)
    slow_byte_ms: float = 0.0  # a slow terminal: pause between bytes of a frame
    slow_ack_ms: float = 0.0   # a slow terminal: delay before each ACK/NAK
    clock_offset_s: float = 0.0  # a terminal whose clock is off (applied to its Clock)

    def update(self, values: dict[str, Any]) -> None:
        """Checks every value before changing any: a bad plan changes nothing."""
        known = {f.name for f in fields(self)}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"fault {name} must be a number, got {value!r}")
            if value < 0 and name != "clock_offset_s":
                raise ValueError(f"fault {name} must be >= 0, got {value!r}")
        for name, value in values.items():
            setattr(self, name, value)

    def take(self, name: str) -> bool:
        """Use one of the `name` faults if any is left."""
        left = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False


@dataclass
class FaultStats:
    corrupted: int = 0
    acks_dropped: int = 0
    stalled: int = 0
    noisy: int = 0


class FaultyTransport(TransportWrapper):
    """Wraps a Transport; applies the plan on the way out."""

    def __init__(self, inner: Any, plan: FaultPlan | None = None, seed: int = 7) -> None:
        super().__init__(inner)
        self.plan = plan or FaultPlan()
        self.stats = FaultStats()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            plan = self.plan
            if data in (ACK_BYTE, NAK_BYTE):
                if plan.slow_ack_ms:
                    time.sleep(plan.slow_ack_ms / 1000)
                if data == ACK_BYTE and plan.take("drop_acks"):
                    self.stats.acks_dropped += 1
                    return
                self.inner.write(data)
                return
            if plan.take("noise"):
                self.stats.noisy += 1
                self.inner.write(bytes(self._rng.choice(_NOISE) for _ in range(plan.noise_bytes)))
            if plan.take("corrupt"):
                self.stats.corrupted += 1
                data = data[:-1] + bytes([data[-1] ^ 0x5A])
            elif plan.take("stall"):  # one spoiling per frame, so each is seen on its own
                self.stats.stalled += 1
                half = max(len(data) // 2, 1)
                self.inner.write(data[:half])
                time.sleep(plan.stall_s)
                data = data[half:]
            if plan.slow_byte_ms:
                for i in range(len(data)):
                    self.inner.write(data[i:i + 1])
                    time.sleep(plan.slow_byte_ms / 1000)
                return
            self.inner.write(data)
