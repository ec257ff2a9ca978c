"""The operator's service commands of `loyalty-backend`: backup, restore, health; and what
`run` needs from operations: the broker password file and the metrics endpoint.

Registered by backend/cli.py (`add_commands`, `COMMANDS`, `main`). Errors are one line
on stderr with exit status 2 and nothing changed, as every other command's.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from backend import backup, engine, migrations, store, store_ops, transfer
from backend.config import Settings
from protocols.address import parse_host_port
from protocols.secret_file import read_private

if TYPE_CHECKING:
    from backend.metrics import BackendMetrics, MetricsServer

PROG = "loyalty-backend"
COMMANDS = ("backup", "restore", "health")
HEALTHY, UNHEALTHY, USAGE = 0, 1, 2


class OpsError(Exception):
    """A wrong argument or a refused operation: exit status 2, nothing changed."""


def add_commands(sub: argparse._SubParsersAction,
                 common: Callable[[argparse.ArgumentParser], None]) -> None:
    bk = sub.add_parser("backup", help="a checked backup of the ledger, while the backend runs")
    common(bk)
    bk.add_argument("--to", dest="folder", required=True, help="folder the backup goes into")
    bk.add_argument("--keep", type=int, help="keep this many of this database's backups, "
                    "remove the oldest (only files `backup` made)")

    rs = sub.add_parser("restore", help="a backup into an empty database, then verified")
    rs.add_argument("--from", dest="source", required=True, help="a file `backup` made")
    rs.add_argument("--db", required=True, help="the empty target: a new SQLite file, or "
                    "postgresql://user@host:port/dbname (for a .dump, a new database)")
    rs.add_argument("--config", help="backend TOML file (config/backend.toml)")

    hl = sub.add_parser("health", help="exit 0 if the backend is healthy, 1 with the reason")
    common(hl)
    hl.add_argument("--broker", help="HOST:PORT of the MQTT broker (or [mqtt] broker)")
    hl.add_argument("--broker-username")
    hl.add_argument("--broker-password-file", help="file holding the broker password")
    hl.add_argument("--broker-ca", help="CA file: connect with TLS")
    hl.add_argument("--metrics", help="URL of the running backend's metrics "
                    "(http://127.0.0.1:9740/metrics): it must answer")
    hl.add_argument("--timeout", type=float, default=5.0, help="seconds for each answer")
    hl.add_argument("--max-sms-waiting", type=int, default=100,
                    help="most SMS waiting to be sent that count as healthy")
    hl.add_argument("--max-sms-age", type=float, default=3600.0,
                    help="oldest SMS waiting, seconds, that counts as healthy")
    hl.add_argument("--max-sms-failed", type=int, default=5,
                    help="most SMS given up in the last hour that count as healthy")


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.command == "backup":
            return _backup(args)
        if args.command == "restore":
            return _restore(args)
        return _health(args, settings)
    except (OpsError, backup.BackupError, transfer.CopyError, store.StoreError) as exc:
        print(f"{PROG}: error: {engine.mask(str(exc))}", file=sys.stderr)
        return USAGE
    except engine.DatabaseError as exc:
        print(f"{PROG}: database error: {engine.mask(str(exc)).strip()}", file=sys.stderr)
        return USAGE


# --- backup and restore ----------------------------------------------------------------


def _target(db: str) -> engine.Target:
    try:
        return engine.parse_target(db)
    except ValueError as exc:
        raise OpsError(str(exc)) from None


def _backup(args: argparse.Namespace) -> int:
    made = backup.backup(_target(args.db), Path(args.folder), args.keep, datetime.now(UTC))
    print(f"backup {made.path} ({made.size:,} bytes): {made.what}")
    for old in made.removed:
        print(f"removed {old} (--keep {args.keep})")
    return 0


def _restore(args: argparse.Namespace) -> int:
    target = _target(args.db)
    checks, version = backup.restore(Path(args.source), target)
    print(transfer.render(checks, args.source, target, verb="restored",
                          labels=("backup", "restored")))
    if version != migrations.LATEST:
        print(f"{target}: schema version {version}; run `{PROG} migrate --db ...` before "
              "starting the backend")
    return 0


# --- health ----------------------------------------------------------------------------


class Unhealthy(Exception):
    """The first reason the backend is not healthy."""


def _health(args: argparse.Namespace, settings: Settings) -> int:
    """Database, broker, a backend's presence, the SMS outbox, the running backend's
    metrics; in that order, the first failure is the answer. Writes and publishes nothing."""
    try:
        sms = _check_database(args)
        _check_broker(args, settings)
        _check_sms(args, sms)
        if args.metrics:
            _check_metrics(args.metrics, args.timeout)
    except Unhealthy as exc:
        print(f"{PROG}: unhealthy: {engine.mask(str(exc))}")
        return UNHEALTHY
    print(f"{PROG}: healthy")
    return HEALTHY


def _check_database(args: argparse.Namespace) -> store_ops.OutboxHealth:
    """Reachable, with this version's schema; the outbox's state read on the way."""
    target = _target(args.db)
    if target.path is not None and not target.path.is_file():
        raise Unhealthy(f"database: {target} does not exist")
    try:
        conn = store.connect(target, create=False)
    except store.StoreError as exc:
        raise Unhealthy(f"database: {exc}") from None
    try:
        version = migrations.current_version(conn)
        if version is None:
            raise Unhealthy(f"database: {target} has no schema (run `{PROG} migrate`)")
        now = datetime.now(UTC)
        sms = store_ops.outbox_health(conn, now - timedelta(hours=1))
    except engine.DatabaseError as exc:
        raise Unhealthy(f"database: {target}: {str(exc).strip()}") from None
    finally:
        conn.close()
    return sms


def _check_broker(args: argparse.Namespace, settings: Settings) -> None:
    from protocols.mqtt_client import probe_broker  # paho only where it is needed

    broker = args.broker or settings.mqtt.broker
    if not broker:
        raise OpsError("--broker HOST:PORT is required (or [mqtt] broker in the config)")
    try:
        host, port = parse_host_port(broker)
    except ValueError as exc:
        raise OpsError(f"--broker: {exc}") from None
    username = args.broker_username or settings.mqtt.username
    password = broker_password(args.broker_password_file, settings, given=None)
    reason = probe_broker(host, port, client_id=f"loyalty-backend-health-{uuid.uuid4().hex[:8]}",
                          username=username, password=password,
                          ca_file=args.broker_ca or settings.mqtt.ca_file, timeout=args.timeout)
    if reason is not None:
        raise Unhealthy(reason)


def _check_sms(args: argparse.Namespace, sms: store_ops.OutboxHealth) -> None:
    if sms.failed_recently > args.max_sms_failed:
        raise Unhealthy(f"sms: {sms.failed_recently} SMS given up in the last hour "
                        f"(> {args.max_sms_failed})")
    if sms.waiting > args.max_sms_waiting:
        raise Unhealthy(f"sms: {sms.waiting} SMS waiting to be sent (> {args.max_sms_waiting})")
    if sms.oldest_waiting_at is not None:
        age = datetime.now(UTC).timestamp() - sms.oldest_waiting_at
        if age > args.max_sms_age:
            raise Unhealthy(f"sms: the oldest SMS has waited {age:.0f} s "
                            f"(> {args.max_sms_age:.0f} s)")


def _check_metrics(url: str, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            text = r.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"backend: its metrics at {url} do not answer: {exc}") from None
    if "loyalty_backend_info{" not in text:
        raise Unhealthy(f"backend: {url} answers, but not with a loyalty backend's metrics")


# --- what `run` needs ------------------------------------------------------------------


def broker_password(password_file: str | None, settings: Settings,
                    given: str | None) -> str | None:
    """The broker password: --broker-password, --broker-password-file, [mqtt] password or
    [mqtt] password_file, the first given. A file readable by other users is refused."""
    if given is not None and password_file:
        raise OpsError("--broker-password and --broker-password-file: give only one of them")
    if given is not None:
        return given
    path = password_file or (None if settings.mqtt.password is not None
                             else settings.mqtt.password_file)
    if not path:
        return settings.mqtt.password
    try:
        text = read_private(path)
    except ValueError as exc:
        raise OpsError(f"broker password file: {exc}") from None
    if not text:
        raise OpsError(f"broker password file: {path} is empty")
    return text


def start_metrics(args: argparse.Namespace, settings: Settings
                  ) -> tuple[BackendMetrics | None, MetricsServer | None]:
    """The counters and the endpoint when --metrics or [metrics] listen asks; else none
    (and prometheus-client stays unloaded)."""
    address = args.metrics or settings.metrics
    if not address:
        return None, None
    from backend.metrics import BackendMetrics, MetricsServer, listen_address

    try:
        host, port = listen_address(address, allow_remote=args.metrics_allow_remote)
    except ValueError as exc:
        raise OpsError(str(exc)) from None
    counters = BackendMetrics()
    try:
        server = MetricsServer(counters, args.db, host, port)
    except OSError as exc:
        raise OpsError(f"metrics: cannot listen on {address}: {exc.strerror}") from None
    return counters, server
