"""`loyalty-sim interactive ...` and `loyalty-sim run SCENARIO.toml ...`."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Any

from protocols.version import version_line
from terminal_sim.terminal import TerminalConfig

DEFAULT_KEY = "00112233445566778899aabbccddeeff"
BAUDS = (9600, 19200, 38400, 57600, 115200)


def _key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("MAC key must be 32 hex digits") from None
    if len(key) != 16:
        raise argparse.ArgumentTypeError("MAC key must be 32 hex digits (16 bytes)")
    return key


def _add_line_options(p: argparse.ArgumentParser, required: bool) -> None:
    line = p.add_mutually_exclusive_group(required=required)
    line.add_argument("--serial", metavar="PATH_OR_URL",
                      help="serial device or pyserial URL (the agent is on the other end)")
    line.add_argument("--connect", metavar="127.0.0.1:PORT",
                      help="TCP to an agent started with --listen (loopback only)")
    p.add_argument("--baud", type=int, default=115200, choices=BAUDS)
    p.add_argument("--terminal-id", help="field 41, 8 characters (default T0000001)")
    p.add_argument("--merchant-id", help="field 42, 15 characters (default M00000000000001)")
    p.add_argument("--mac-key", type=_key, help="16-byte MAC key as 32 hex digits")
    p.add_argument("--echo-interval", type=float, default=None,
                   help="seconds of idle line between echoes (default 60)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty-sim",
                                     description="Simulated bank POS terminal")
    parser.add_argument("--version", action="version", version=version_line("loyalty-sim"))
    sub = parser.add_subparsers(dest="command", required=True)
    inter = sub.add_parser("interactive", help="work the terminal by hand (terminal UI)")
    _add_line_options(inter, required=True)
    run = sub.add_parser("run", help="play a scenario file; exit 1 if an expectation fails")
    run.add_argument("scenario", type=Path)
    _add_line_options(run, required=True)
    run.add_argument("--outbox", type=Path, help="SMS outbox file, for one-time codes")
    run.add_argument("--quiet", action="store_true", help="print only failures and the total")
    run.add_argument("--backend-db", type=Path, metavar="PATH",
                     help="the backend's SQLite file, for operator steps (link_card)")
    run.add_argument("--backend-config", type=Path, metavar="FILE",
                     help="the backend's TOML file, passed to its operator commands")
    return parser


def config_from(args: argparse.Namespace, defaults: dict[str, Any] | None = None,
                ) -> TerminalConfig:
    d = defaults or {}
    key = args.mac_key or (bytes.fromhex(d["mac_key"]) if "mac_key" in d else None)
    cfg = TerminalConfig(
        terminal_id=args.terminal_id or d.get("terminal_id", "T0000001"),
        merchant_id=args.merchant_id or d.get("merchant_id", "M00000000000001"),
        mac_key=key or bytes.fromhex(DEFAULT_KEY))
    if args.echo_interval is not None:
        cfg.echo_interval = args.echo_interval
    elif "echo_interval" in d:
        cfg.echo_interval = float(d["echo_interval"])
    for name in ("advice_attempts",):
        if name in d:
            setattr(cfg, name, int(d[name]))
    return cfg


def _open_line(args: argparse.Namespace) -> Any:
    """The line to the agent, or None after saying why it cannot be opened."""
    from terminal_sim.session import open_transport

    try:
        if args.serial and "://" not in args.serial and not os.path.exists(args.serial):
            raise FileNotFoundError(errno.ENOENT, "no such serial device", args.serial)
        return open_transport(args.serial, args.connect, args.baud)
    except ValueError as exc:
        print(f"loyalty-sim: {exc}", file=sys.stderr)
    except OSError as exc:
        hint = (f" (is an agent running with --listen {args.connect}?)" if args.connect
                else " (check the device name; its user needs the dialout group)")
        print(f"loyalty-sim: cannot open {args.connect or args.serial}: "
              f"{exc.strerror or exc}{hint}", file=sys.stderr)
    return None


def needs(scenario: Any, args: argparse.Namespace) -> None:
    """Options a scenario's steps cannot run without: refused before anything is sent."""
    from terminal_sim.scenario import ScenarioError

    for step in scenario.steps:
        if step.action == "link_card" and not args.backend_db:
            raise ScenarioError(f"step {step.name!r} links a card on the backend: "
                                "give --backend-db PATH (and --backend-config FILE)")
        if step.params.get("otp_from_outbox") and not args.outbox:
            raise ScenarioError(f"step {step.name!r} reads the one-time code from the SMS "
                                "outbox: give --outbox PATH")


def run_command(args: argparse.Namespace) -> int:
    from terminal_sim.scenario import Runner, ScenarioError, backend_command, load
    from terminal_sim.session import Session

    try:
        scenario = load(args.scenario)
        needs(scenario, args)
        config = config_from(args, scenario.terminal)
    except (ScenarioError, ValueError) as exc:
        print(f"loyalty-sim: {exc}", file=sys.stderr)
        return 2
    transport = _open_line(args)
    if transport is None:
        return 2
    session = Session(transport, config)
    failed = 0

    def report(outcome: Any) -> None:
        nonlocal failed
        if outcome.ok:
            if not args.quiet:
                print(f"PASS {outcome.step.name}")
        else:
            failed += 1
            print(f"FAIL {outcome.step.name}")
            for f in outcome.failures:
                print(f"     {f}")
    with session:
        backend = (backend_command(args.backend_db, args.backend_config)
                   if args.backend_db else None)
        outcomes = Runner(session.terminal, session.set_faults, args.outbox,
                          stats=session.stats, backend=backend).run(scenario, report)
    print(f"{scenario.name}: {len(outcomes) - failed} passed, {failed} failed")
    return 1 if failed else 0


def interactive_command(args: argparse.Namespace) -> int:
    from terminal_sim.ui import TerminalApp

    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"loyalty-sim: {exc}", file=sys.stderr)
        return 2
    transport = _open_line(args)
    if transport is None:
        return 2
    TerminalApp(transport, config).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_command(args)
    return interactive_command(args)


if __name__ == "__main__":
    sys.exit(main())
