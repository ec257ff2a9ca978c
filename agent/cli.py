"""`loyalty-agent run ...`: parse settings, refuse bad ones with exit 2, run until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from agent import memory
from agent.config import SECRET_PAIRS, SETTINGS, ConfigError, build, load_toml
from agent.journal import JournalError

EXIT_BAD_SETTING = 2

_HELP = {
    "serial": "serial device path or pyserial URL of the terminal link",
    "baud": "serial baud rate (9600, 19200, 38400, 57600, 115200)",
    "listen": "127.0.0.1:PORT for terminals that connect over loopback TCP",
    "broker": "MQTT broker HOST:PORT",
    "terminal_id": "terminal id (field 41, 8 characters)",
    "merchant_id": "merchant id (field 42, 15 characters)",
    "mac_key": "the terminal's MAC key, 32 hex digits (visible in ps: prefer --mac-key-file)",
    "mac_key_file": "file holding the MAC key as 32 hex digits; must not be world-readable",
    "journal": "journal file (created if missing)",
    "broker_username": "broker user name (the terminal id under the ACL)",
    "broker_password": "broker password (visible in ps: prefer --broker-password-file)",
    "broker_password_file": "file holding the broker password; must not be world-readable",
    "broker_ca_file": "CA certificate file: connect to the broker over TLS",
    "inquiry_budget": "seconds from request to 91 when the backend is silent (<= 2.5)",
    "advice_wait": "seconds a 0230 may wait for the backend's EA/CB/RL (0: never)",
    "retry_initial": "first store-and-forward retry delay, seconds",
    "retry_max": "largest store-and-forward retry delay, seconds",
    "forward_timeout": "seconds to wait for the backend's answer to a forwarded advice",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loyalty-agent", description="Loyalty agent beside a POS")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent for one terminal")
    run.add_argument("--config", help="TOML file with the settings (command line wins)")
    groups = {name: run.add_mutually_exclusive_group() for name, _ in SECRET_PAIRS}
    pair_of = {name: first for first, second in SECRET_PAIRS for name in (first, second)}
    for name, kind in SETTINGS.items():
        (groups[pair_of[name]] if name in pair_of else run).add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=_HELP[name],
        )
    return p


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    merged: dict[str, Any] = load_toml(args.config) if args.config else {}
    for pair in SECRET_PAIRS:  # a secret on the command line replaces the TOML's, either way
        if any(getattr(args, n) is not None for n in pair):
            for name in pair:
                merged.pop(name, None)
    for name in SETTINGS:
        value = getattr(args, name)
        if value is not None:
            merged[name] = value
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = build(settings_from(args))
    except ConfigError as exc:
        print(f"loyalty-agent: bad setting: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    logging.basicConfig(
        level=cfg.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    memory.limit_arenas()  # before any thread: see agent/memory.py
    from agent.service import Agent  # after the settings are known good

    try:
        agent = Agent(cfg)
    except JournalError as exc:
        print(f"loyalty-agent: bad setting: journal: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    memory.trim()  # the journal's replay and the imports leave freed heap behind
    signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    signal.signal(signal.SIGINT, lambda *_: agent.request_stop())
    try:
        agent.start()
    except (OSError, ValueError) as exc:
        print(f"loyalty-agent: cannot start: {exc}", file=sys.stderr)
        agent.stop()
        return EXIT_BAD_SETTING
    try:
        agent.run_until_stopped()
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
