"""`loyalty-panel run --db PATH_OR_URL --listen 127.0.0.1:8080 [--config FILE] [--allow-remote]`.

Loopback by default: any other address is refused without `--allow-remote`, and then the
panel must stand behind TLS or a reverse proxy (docs/panel.md has Caddy and nginx).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import tomllib
from pathlib import Path

from backend.config import ConfigError
from backend.config import load as load_backend_config
from backend.program import Program
from panel.app import PanelSettings, create_app
from panel.database import Database, DatabaseNotReady
from panel.presence import PresenceWatcher
from protocols.address import parse_host_port

log = logging.getLogger("panel")


class UsageError(Exception):
    """A bad command line or config file: exit 2, nothing started."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(db: str, config: Path | None) -> PanelSettings:
    table: dict = {}
    if config is not None:
        try:
            table = tomllib.loads(config.read_text(encoding="utf-8")).get("panel", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"--config {config}: {exc}") from None
    known = {"secure_cookies", "idle_minutes", "language", "backend_config"}
    if unknown := set(table) - known:
        raise UsageError(f"--config {config}: unknown [panel] keys {sorted(unknown)}; "
                         f"known: {sorted(known)}")
    secure = table.get("secure_cookies", "auto")
    if secure not in (True, False, "auto"):
        raise UsageError("[panel] secure_cookies is true, false or \"auto\"")
    idle = table.get("idle_minutes", 30)
    if not isinstance(idle, int) or isinstance(idle, bool) or not 1 <= idle <= 24 * 60:
        raise UsageError("[panel] idle_minutes is a whole number of minutes, 1..1440")
    language = table.get("language", "fa")
    if language not in ("fa", "en"):
        raise UsageError("[panel] language is \"fa\" or \"en\"")
    program = Program()
    mqtt = None
    if (backend_config := table.get("backend_config")) is not None:
        if not isinstance(backend_config, str) or not backend_config:
            raise UsageError("[panel] backend_config is the path of the backend's TOML file")
        path = Path(backend_config)
        if not path.is_absolute() and config is not None:
            path = config.parent / path
        try:
            backend_settings = load_backend_config(str(path))
            program = backend_settings.program
            # the terminals page's presence: the backend's broker account ([mqtt])
            mqtt = backend_settings.mqtt if backend_settings.mqtt.broker else None
        except ConfigError as exc:
            raise UsageError(f"[panel] backend_config {path}: {exc}") from None
    return PanelSettings(db=db, secure_cookies=None if secure == "auto" else secure,
                         idle_timeout=idle * 60.0, default_language=language, program=program,
                         mqtt=mqtt)


def parse_listen(text: str, allow_remote: bool) -> tuple[str, int]:
    try:
        host, port = parse_host_port(text, port_zero=True)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"--listen {text}: not a loopback address; the panel listens on another address "
            "only with --allow-remote, behind TLS or a reverse proxy (see docs/panel.md)")
    return host, port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty-panel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve the panel")
    run.add_argument("--db", required=True, help="SQLite path or postgresql:// URL")
    run.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (loopback)")
    run.add_argument("--config", type=Path, help="TOML file with a [panel] table")
    run.add_argument("--allow-remote", action="store_true",
                     help="allow a non-loopback --listen (only behind TLS or a proxy)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if not args.db.strip():
            raise UsageError("--db is empty")
        host, port = parse_listen(args.listen, args.allow_remote)
        settings = load_settings(args.db, args.config)
        database = Database(args.db)
        database.check()
    except (UsageError, DatabaseNotReady, ValueError) as exc:
        print(f"loyalty-panel: {exc}", file=sys.stderr)
        return 2
    import uvicorn  # here, so `--help` and usage errors stay fast

    log.info("panel for %s", database.target_text)
    presence = None
    if settings.mqtt is not None and settings.mqtt.broker:
        presence = PresenceWatcher(settings.mqtt.broker, username=settings.mqtt.username,
                                   password=settings.mqtt.password,
                                   ca_file=settings.mqtt.ca_file).start()
        log.info("terminals' presence from the broker at %s", settings.mqtt.broker)
    app = create_app(settings, database=database, presence=presence)
    # proxy_headers: behind a reverse proxy on loopback, the client address (the login
    # throttle's key) and https (Secure cookies) come from its X-Forwarded-* headers.
    uvicorn.run(app, host=host, port=port, proxy_headers=True,
                forwarded_allow_ips="127.0.0.1,::1", log_level="info", access_log=False)
    if presence is not None:
        presence.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
