"""`loyalty-agent run ...`: parse settings, refuse bad ones with exit 2, run until SIGTERM.

SIGHUP re-reads the config file (and the command line's settings, which still win) for
what can change without a restart: the log level and the broker password file.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from agent import memory
from agent.config import SECRET_PAIRS, SETTINGS, ConfigError, build, load_toml
from agent.journal import JournalError
from protocols import servicelog
from protocols.version import version_line

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
    "log_format": "text (one line per event) or json (one object per line)",
    "log_file": "log to this file (reopened when logrotate moves it) instead of stderr",
    "metrics": "serve Prometheus metrics on HOST:PORT (loopback unless --metrics-allow-remote)",
}
log = logging.getLogger("agent")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loyalty-agent", description="Loyalty agent beside a POS")
    p.add_argument("--version", action="version", version=version_line("loyalty-agent"))
    sub = p.add_subparsers(dest="command", required=True)
    health = sub.add_parser("health", help="exit 0 if this agent is healthy, 1 with the reason")
    health.add_argument("--config", required=True, help="the agent's TOML file")
    health.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the broker and the backend's presence")
    health.add_argument("--max-waiting", type=int, default=500,
                        help="most advices waiting to be forwarded that count as healthy")
    health.add_argument("--max-age", type=float, default=3600.0,
                        help="oldest advice waiting, seconds, that counts as healthy")
    health.add_argument("--max-journal-mb", type=float, default=64.0,
                        help="largest journal file, MB, that counts as healthy")
    run = sub.add_parser("run", help="run the agent for one terminal")
    run.add_argument("--config", help="TOML file with the settings (command line wins)")
    run.add_argument("--metrics-allow-remote", action="store_true", default=None,
                     help="let --metrics listen on a non-loopback address")
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
    if getattr(args, "metrics_allow_remote", None):
        merged["metrics_allow_remote"] = True
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
    if args.command == "health":
        from agent.health import check

        return check(args)
    try:
        cfg = build(settings_from(args))
    except ConfigError as exc:
        print(f"loyalty-agent: bad setting: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    try:
        servicelog.configure("loyalty-agent", cfg.log_level, cfg.log_format, cfg.log_file)
    except OSError as exc:
        print(f"loyalty-agent: bad setting: log_file: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    log.info("%s starting; settings %s", version_line("loyalty-agent"),
             servicelog.mask_settings(_shown(cfg)))
    # glibc's malloc arenas: MALLOC_ARENA_MAX in the environment (the systemd unit sets it).
    from agent.service import Agent  # after the settings are known good

    try:
        agent = Agent(cfg)
    except JournalError as exc:
        print(f"loyalty-agent: bad setting: journal: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    memory.trim()  # the journal's replay and the imports leave freed heap behind
    signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    signal.signal(signal.SIGINT, lambda *_: agent.request_stop())
    # The reload runs in its own thread: a signal handler must not take the logging lock.
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(
        target=reload, args=(args, agent), name="sighup", daemon=True).start())
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


def _shown(cfg: Any) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def reload(args: argparse.Namespace, agent: Any) -> None:
    """SIGHUP: the log level and the broker password (file) again; the rest needs a restart."""
    try:
        cfg = build(settings_from(args))
    except ConfigError as exc:
        log.error("SIGHUP: settings not reloaded, keeping the old ones: %s", exc)
        return
    level = servicelog.set_level(cfg.log_level)
    password = "unchanged"
    if cfg.broker_password != agent.cfg.broker_password:
        agent.backend.set_password(cfg.broker_password)
        password = "changed (used from the next connection)"
    agent.cfg = cfg.__class__(**{**_shown(agent.cfg), "log_level": level,
                                 "broker_password": cfg.broker_password})
    log.info("SIGHUP: reloaded: log level %s, broker password %s", level, password)


if __name__ == "__main__":
    sys.exit(main())
