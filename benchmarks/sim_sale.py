"""A whole sale through the real system, as the simulated terminal sees it.

Starts Mosquitto, the backend and the agent (processes, in a temporary folder), then
times, from the terminal's side over a pty pair:
- echo: one 0800/0810 round trip (the agent alone: the reference);
- sale: inquiry (backend) + bank + purchase advice (agent's journal), end to end;
- inquiry: one loyalty inquiry alone (agent, MQTT, backend and back).
Ratios: sale / echo, and the inquiry against PROTOCOL.md's 3 s budget.

    python3 benchmarks/sim_sale.py [--sales N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from demo.stack import Stack

PAN = "6037991234567891"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sales", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Stack(Path(tmp)) as stack:
        session = stack.session(periodic_echo=False)
        stack.wait_ready(session)
        t = session.terminal
        phones = [f"0912{i:07d}" for i in range(1, 21)]
        for phone in phones:
            t.enroll(phone)
        echo = []
        for _ in range(args.sales):
            start = time.perf_counter()
            t.echo()
            echo.append(time.perf_counter() - start)
        sale, inquiry = [], []
        for i in range(args.sales):
            phone = phones[i % len(phones)]
            start = time.perf_counter()
            s = t.sale(100_000 + i, PAN, "1234", phone=phone)
            sale.append(time.perf_counter() - start)
            if s.inquiry is None or s.inquiry.response is None or not s.advice_answered:
                raise SystemExit(f"sale {i} incomplete: {s}")
            start = time.perf_counter()
            t.inquire(50_000, phone=phone, redeem=0)
            inquiry.append(time.perf_counter() - start)
    ms = 1000.0
    print(f"{'':10} {'median ms':>10} {'p95 ms':>8} {'per s':>8}")
    for name, values in (("echo", echo), ("inquiry", inquiry), ("sale", sale)):
        med = statistics.median(values)
        print(f"{name:10} {med * ms:10.2f} {percentile(values, 0.95) * ms:8.2f} "
              f"{1 / med:8.1f}")
    print(f"ratio sale/echo (median): {statistics.median(sale) / statistics.median(echo):.1f}")
    print(f"inquiry p95 / 3 s budget: {percentile(inquiry, 0.95) / 3.0:.4f}")


if __name__ == "__main__":
    main()
