"""`loyalty-backend`: the service (`run`) and the shop operator's commands.

Every operator command checks its arguments and the config before it opens the
database, and a problem is one line naming it with exit status 2 and no change made.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import dataclasses
import gc
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

import jdatetime

from backend import cli_ops, cli_users, engine, ledger, report, report_render, store, transfer
from backend.config import ConfigError, Settings, load
from backend.program import Offer, Program, parse_hours, parse_weekdays
from protocols import servicelog
from protocols.identity import IdentityError, normalize_card, normalize_phone
from protocols.persian import TEHRAN, jalali
from protocols.version import version_line

if TYPE_CHECKING:
    from backend.service import BackendService

PROG = "loyalty-backend"


class UsageError(Exception):
    """A wrong argument or a state the command refuses; exit status 2."""


class NoSuchDay(UsageError):
    """A date written correctly that the calendar does not have (1990-02-30)."""


_DAY = re.compile(r"(\d{1,4})[-/](\d{1,2})[-/](\d{1,2})")
_MONTH_DAY = re.compile(r"(\d{1,2})-(\d{1,2})")


def _no_such_day(text: str, y: int | None, m: int, d: int, jalali: bool) -> NoSuchDay:
    """Why a well-formed date does not exist: the month, or how many days it has."""
    if not 1 <= m <= 12:
        why = f"there is no month {m}"
    elif d < 1:
        why = f"there is no day {d}"
    elif y is None:  # MM-DD, any year: February may have 29
        why = f"month {m} has at most {calendar.monthrange(2000, m)[1]} days"
    elif jalali:
        days = jdatetime.j_days_in_month[m - 1] + (m == 12 and jdatetime.date(y, 1, 1).isleap())
        why = f"month {m} of the Jalali year {y} has {days} days"
    else:
        why = f"month {m} of {y} has {calendar.monthrange(y, m)[1]} days"
    return NoSuchDay(f"{text!r}: that date does not exist ({why})")


def parse_day(text: str) -> date:
    """A day as YYYY-MM-DD, Gregorian, or Jalali when the year is below 1700 (1405-09-02)."""
    match = _DAY.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{text!r} is not a date (YYYY-MM-DD, Gregorian or Jalali)")
    y, m, d = (int(g) for g in match.groups())
    if y < 1:
        raise UsageError(f"{text!r} is not a date (YYYY-MM-DD, Gregorian or Jalali)")
    try:
        if y < 1700:
            return jdatetime.date(y, m, d).togregorian()
        return date(y, m, d)
    except ValueError:
        raise _no_such_day(text, y, m, d, jalali=y < 1700) from None


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=TEHRAN).astimezone(UTC)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Loyalty club backend")
    p.add_argument("--version", action="version", version=version_line(PROG))
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--db", required=True, help="SQLite file, or postgresql://user@host:port/dbname"
        )
        sp.add_argument("--config", help="backend TOML file (config/backend.toml)")

    run = sub.add_parser("run", help="answer the agents' requests over MQTT")
    common(run)
    run.add_argument("--broker", help="HOST:PORT of the MQTT broker (or [mqtt] broker)")
    run.add_argument("--broker-username")
    run.add_argument("--broker-password")
    run.add_argument("--broker-password-file", help="file holding the broker password (not "
                     "world-readable; or [mqtt] password_file); SIGHUP reads it again")
    run.add_argument("--broker-ca", help="CA file: connect with TLS")
    run.add_argument("--instance", help="name in the presence topic (default host-pid)")
    run.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (or [log] level; "
                     "SIGHUP re-reads [log] level when this is not given)")
    run.add_argument("--log-format", choices=servicelog.FORMATS, help="text (default) or json "
                     "(or [log] format)")
    run.add_argument("--log-file", help="log to this file (logrotate-safe) instead of stderr "
                     "(or [log] file)")
    run.add_argument("--metrics", help="serve Prometheus metrics on HOST:PORT (or [metrics] "
                     "listen; loopback unless --metrics-allow-remote)")
    run.add_argument("--metrics-allow-remote", action="store_true",
                     help="let --metrics listen on a non-loopback address")

    member = sub.add_parser("member", help="a member's profile, tier, balance, recent ledger")
    common(member)
    member.add_argument("phone")
    member.add_argument("--birthday", help="set the birthday (YYYY-MM-DD or MM-DD; 'none' clears)")
    member.add_argument("--rows", type=int, default=20, help="ledger rows to show")
    member.add_argument("--consent", choices=("on", "off"), help="marketing SMS consent (off: "
                        "what a \"لغو\" reply does; the SMS worker drops queued ones)")
    member.add_argument("--revoke-links", action="store_true",
                        help="end every link to the member's own page (a new one comes "
                        "with the next SMS or from the page's \"new link\")")

    rep = sub.add_parser("report", help="purchases, members, credit and SMS in a period")
    common(rep)
    rep.add_argument("--from", dest="since", help="first day (default: the beginning)")
    rep.add_argument("--to", dest="until", help="last day, inclusive (default: today)")
    rep.add_argument(
        "--lang", choices=report_render.LANGS, default="fa", help="fa (default) or en"
    )
    rep.add_argument(
        "--format", choices=report_render.FORMATS, default="text", help="text (default), csv, json"
    )
    rep.add_argument("--branch", help="one branch of the club only")
    rep.add_argument("--terminal", help="one terminal of the club only")

    offer = sub.add_parser("offer", help="extra cash-back offers")
    osub = offer.add_subparsers(dest="action", required=True)
    add = osub.add_parser("add", help="add an offer")
    common(add)
    add.add_argument("name")
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--percent", type=float, help="extra cash-back, percent of the amount")
    kind.add_argument("--amount", type=int, help="extra cash-back, fixed rials")
    add.add_argument("--until", required=True, help="expiry date, last day the offer runs")
    add.add_argument("--from", dest="start", help="first day (default: now)")
    add.add_argument("--weekdays", default="", help="e.g. sat,sun (default: every day)")
    add.add_argument("--hours", help="local hours FROM-TO, e.g. 10-14")
    add.add_argument("--min-purchase", type=int, default=0, help="minimum gross, rials")
    add.add_argument(
        "--target", default="everyone",
        help="everyone | birthday | tier:NAME | visits:N | segment:NAME",
    )
    lst = osub.add_parser("list", help="list offers")
    common(lst)
    lst.add_argument("--all", action="store_true", help="include ended offers")
    end = osub.add_parser("end", help="end an offer now")
    common(end)
    end.add_argument("offer_id", type=int)

    card = sub.add_parser("card", help="loyalty cards")
    csub = card.add_subparsers(dest="action", required=True)
    cadd = csub.add_parser("add", help="link a card to a member")
    common(cadd)
    cadd.add_argument("phone")
    cadd.add_argument("card")
    crep = csub.add_parser("replace", help="replace a lost card; the credit stays")
    common(crep)
    crep.add_argument("old")
    crep.add_argument("new")

    mig = sub.add_parser("migrate", help="bring the database's schema to this version")
    common(mig)

    cp = sub.add_parser("copy", help="move a SQLite database into an empty PostgreSQL one")
    cp.add_argument("--from", dest="source", required=True, help="the shop's SQLite file")
    cp.add_argument("--to", dest="target", required=True, help="postgresql://user@host:port/db")
    cp.add_argument("--config", help="backend TOML file (config/backend.toml)")

    adj = sub.add_parser("adjust", help="a manual credit adjustment (+ or -)")
    common(adj)
    adj.add_argument("phone")
    adj.add_argument("amount", type=int)
    adj.add_argument("--reason", required=True)
    tr = sub.add_parser("transfer", help="give a member's credit to another phone (no code: "
                        "the operator's act, audited; docs/credit-transfer.md)")
    common(tr)
    tr.add_argument("--from", dest="sender", required=True, help="the giving member's phone")
    tr.add_argument("--to", dest="receiver", required=True, help="the receiving phone")
    tr.add_argument("--amount", type=int, required=True, help="rials")
    cli_ops.add_commands(sub, common)
    for sp in (member, rep, add, lst, end, cadd, crep, adj, tr):
        sp.add_argument("--club", help="the club (default: the only one)")
    add.add_argument("--branches", help="only in these branches of the club (a,b; default all)")

    from backend import cli_registry  # the registry's commands: club, branch, terminal, program

    cli_registry.add_parsers(sub, common)

    cli_users.add_parser(sub, common)
    from backend import cli_segments

    cli_segments.add_parser(sub, common)
    from backend import cli_giftcards  # giftcard issue|list|show

    cli_giftcards.add_parser(sub, common)
    from backend import cli_campaigns  # campaign add|list|show|cancel

    cli_campaigns.add_parser(sub, common)
    from backend import cli_draws  # draw add|list|show|close|entries|run|verify

    cli_draws.add_parser(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command's exit status; a reader that stops early (`| head`) ends it quietly."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a vanished reader shows here, not as noise at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE  # what a shell reports for `cat` stopped by its reader


def _silence_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone and Python's final flush must not fail."""
    with contextlib.suppress(OSError, ValueError):  # no real stdout (captured): nothing to do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _say(text: str) -> None:
    """A line of the service on stdout; its reader going away must not stop the service."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _silence_stdout()


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load(args.config)
        if args.command == "run":
            return _run(args, settings)
        if args.command == "copy":
            return _copy(args)
        if args.command in cli_ops.COMMANDS:
            return cli_ops.main(args, settings)
        if args.command == "migrate":
            return _migrate(args, settings)
        if args.command == "draw" and args.action == "verify":  # anyone's: no database
            return _draw(args, settings)
        _existing(args.db)
        from backend import cli_giftcards, cli_registry

        handler = {
            "member": _member,
            "report": _report,
            "offer": _offer,
            "card": _card,
            "adjust": _adjust,
            "transfer": _transfer,
            **cli_registry.HANDLERS,
            "user": cli_users.run,
            "segment": _segment,
            "giftcard": cli_giftcards.run,
            "campaign": _campaign,
            "draw": _draw,
        }[args.command]
        return handler(args, settings)
    except (ConfigError, UsageError, cli_ops.OpsError, cli_users.UsageError, store.StoreError,
            transfer.CopyError) as exc:
        print(f"{PROG}: error: {engine.mask(str(exc))}", file=sys.stderr)
        return 2
    except engine.DatabaseError as exc:
        print(f"{PROG}: database error: {engine.mask(str(exc)).strip()}", file=sys.stderr)
        return 2


def _segment(args: argparse.Namespace, settings: Settings) -> int:
    from backend import cli_segments

    return cli_segments.run(args, settings)


def _campaign(args: argparse.Namespace, settings: Settings) -> int:
    from backend import cli_campaigns

    return cli_campaigns.run(args, settings)


def _draw(args: argparse.Namespace, settings: Settings) -> int:
    from backend import cli_draws

    if args.action == "verify":
        return cli_draws.verify(args)
    return cli_draws.run(args, settings)


def _existing(db: str) -> engine.Target:
    """A SQLite `--db` must exist (an operator command never creates a shop's file)."""
    try:
        target = engine.parse_target(db)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if target.path is not None and not target.path.is_file():
        raise UsageError(f"{target}: no such database (start `{PROG} run` first)")
    return target


def _open(args: argparse.Namespace) -> engine.Connection:
    return store.connect(args.db)


def _club_id(conn: engine.Connection, args: argparse.Namespace) -> int:
    """The club `--club` names, or the only one (several clubs: --club is needed)."""
    from backend.cli_registry import club_of

    return club_of(conn, args.club).id


def _club_program(conn: engine.Connection, club_id: int, settings: Settings) -> Program:
    """The program in force in the club: its newest version, or the configuration's."""
    from backend import store_registry
    from backend.registry import parse_program

    latest = store_registry.latest_program(conn, club_id)
    return parse_program(latest.body) if latest else settings.program


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Forward to this version; a single-shop database becomes one club named after the
    configuration's [shop] name, with its branch `main` and every terminal it has seen."""
    from backend import migrations

    try:
        target = engine.parse_target(args.db)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if target.path is not None and not target.path.parent.is_dir():
        raise UsageError(f"{target}: no such folder {target.path.parent}")
    conn = store.connect(target, check_schema=False, create=False)
    try:
        before = migrations.current_version(conn)
        applied = migrations.migrate(conn, datetime.now(UTC), shop_name=settings.shop_name)
    except migrations.SchemaError as exc:
        raise UsageError(f"{target}: {exc}") from None
    finally:
        conn.close()
    for step in applied:
        print(f"{target}: version {step.version}: {step.name}")
    if not applied:
        print(f"{target}: schema version {before}, already current")
    else:
        was = "none" if before is None else before
        print(f"{target}: schema version {was} -> {applied[-1].version}")
    return 0


def _copy(args: argparse.Namespace) -> int:
    source_t, target_t = _existing(args.source), engine.parse_target(args.target)
    if source_t.path is None:
        raise UsageError("--from must be the shop's SQLite file")
    if not target_t.is_postgresql:
        raise UsageError("--to must be a postgresql:// URL")
    source = store.connect(source_t)
    try:
        target = store.connect(target_t, check_schema=False, create=False)
        try:
            checks = transfer.copy(source, target)
        finally:
            target.close()
    finally:
        source.close()
    print(transfer.render(checks, source_t, target_t))
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from backend.service import BackendService  # paho only where it is needed

    try:
        servicelog.configure(PROG, args.log_level or settings.log_level or "INFO",
                             args.log_format or settings.log_format or "text",
                             args.log_file or settings.log_file)
    except (ValueError, OSError) as exc:
        raise UsageError(f"log: {exc}") from None
    logging.getLogger("backend").info(
        "%s starting; settings %s", version_line(PROG), servicelog.mask_settings(
            {k: v for k, v in vars(args).items() if k != "command"}))
    broker = args.broker or settings.mqtt.broker
    if not broker:
        raise UsageError("--broker HOST:PORT is required (or [mqtt] broker in the config)")
    password = cli_ops.broker_password(args.broker_password_file, settings,
                                       given=args.broker_password)
    counters, metrics_server = cli_ops.start_metrics(args, settings)
    try:
        service = BackendService(
            args.db,
            settings,
            broker=broker,
            instance=args.instance,
            username=args.broker_username,
            password=password,
            ca_file=args.broker_ca,
            metrics=counters,
        )
    except ValueError as exc:
        if metrics_server is not None:
            metrics_server.stop()
        raise UsageError(str(exc)) from None
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(
        target=_reload, args=(args, service), name="sighup", daemon=True).start())
    service.start()
    # What start-up made lives as long as the process: out of the collector's sight, and
    # collections rarer (each request makes a few hundred short-lived objects, no cycles)
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    where = "" if metrics_server is None else (
        f", metrics on {metrics_server.host}:{metrics_server.port}")
    _say(f"{PROG}: running as {service.instance}, broker {broker}{where}")
    while not done.wait(1.0):
        pass
    service.stop()
    if metrics_server is not None:
        metrics_server.stop()
    _say(f"{PROG}: stopped")
    return 0


def _reload(args: argparse.Namespace, service: BackendService) -> None:
    """SIGHUP: the config file's [log] level again (a --log-level given stays in force),
    and the broker password file, for the next connection to the broker."""
    log = logging.getLogger("backend")
    try:
        settings = load(args.config)
        level = servicelog.set_level(args.log_level or settings.log_level or "INFO")
    except (ConfigError, ValueError) as exc:
        log.error("SIGHUP: log level not reloaded: %s", exc)
        return
    said = f"log level {level}"
    if args.broker_password is None and (args.broker_password_file
                                         or settings.mqtt.password_file):
        try:
            password = cli_ops.broker_password(args.broker_password_file, settings, given=None)
        except cli_ops.OpsError as exc:
            log.error("SIGHUP: broker password not reloaded, keeping the old one: %s", exc)
        else:
            changed = password != service.password
            service.set_password(password)
            said += f", broker password {'changed' if changed else 'unchanged'}"
    log.info("SIGHUP: reloaded: %s", said)


def _phone(text: str) -> str:
    try:
        return normalize_phone(text)
    except IdentityError as exc:
        raise UsageError(f"phone {text!r}: {exc}") from None


def _card_number(text: str) -> str:
    from backend.giftcards import is_gift_card

    try:
        number = normalize_card(text)
    except IdentityError as exc:
        raise UsageError(f"card {text!r}: {exc}") from None
    if is_gift_card(number):
        raise UsageError(f"card {text!r}: a gift card number is never a loyalty card")
    return number


def _birthday(text: str) -> str | None:
    if text.lower() == "none":
        return None
    match = _MONTH_DAY.fullmatch(text.strip())
    if match is not None:
        m, d = (int(g) for g in match.groups())
        try:
            date(2000, m, d)  # a leap year: 02-29 is a birthday
        except ValueError:
            raise UsageError(f"birthday {_no_such_day(text, None, m, d, jalali=False)}") from None
        return f"{m:02d}-{d:02d}"
    try:
        return parse_day(text).isoformat()
    except NoSuchDay as exc:
        raise UsageError(f"birthday {exc}") from None
    except UsageError:
        raise UsageError(f"birthday {text!r}: use YYYY-MM-DD or MM-DD") from None


def _fmt_time(value: int) -> str:
    when = store.from_ts(value)
    return f"{jalali(when)} ({when.astimezone(TEHRAN):%Y-%m-%d})"


def _member(args: argparse.Namespace, settings: Settings) -> int:
    phone = _phone(args.phone)
    birthday = _birthday(args.birthday) if args.birthday is not None else ...
    conn = _open(args)
    try:
        m = store.member_by_phone(conn, phone, club_id=_club_id(conn, args))
        if m is None:
            raise UsageError(f"{phone} is not a member")
        if birthday is not ...:
            with store.transaction(conn):
                store.set_birthday(conn, m.id, birthday)
            m = store.member_by_id(conn, m.id)
        if args.consent is not None:
            from backend import store_marketing

            with store.transaction(conn):
                store_marketing.set_consent_by_phone(conn, m.phone, args.consent == "on",
                                                     datetime.now(UTC), club_id=m.club_id)
        if args.revoke_links:
            from backend import store_audit, store_member_tokens
            from backend.cli_users import CLI_USER

            now = datetime.now(UTC)
            with store.transaction(conn):
                ended = store_member_tokens.revoke_all(conn, m.id, now)
                store_audit.record(conn, user=CLI_USER, club_id=m.club_id,
                                   action="member.revoke_links", target=f"member:{m.code}",
                                   before={"live_links": ended}, after={"live_links": 0},
                                   now=now)
            print(f"links     {ended} ended (every link to this member's page)")
        bal = ledger.balance(conn, m.id)
        print(f"phone     {m.phone}")
        print(f"code      {m.code}")
        print(f"tier      {m.tier}")
        print(f"balance   {bal:,} rials")
        print(f"held      {ledger.held(conn, m.id):,} rials")
        if m.debt:
            print(f"debt      {m.debt:,} rials (taken from future earnings)")
        print(f"enrolled  {_fmt_time(m.enrolled_at)}")
        print(f"birthday  {m.birthday or '-'}")
        print(f"marketing {'consent given' if _consent(conn, m.id) else 'no consent'}")
        if m.referrer_id is not None:
            print(f"referrer  {store.member_by_id(conn, m.referrer_id).phone}")
        for number, active in store.cards_of(conn, m.id):
            print(f"card      {number} {'active' if active else 'replaced'}")
        visits, spend = store.purchase_totals(conn, m.id)
        print(f"purchases {visits}, {spend:,} rials in all")
        print("recent ledger:")
        for row in ledger.recent(conn, m.id, args.rows):
            print(f"  {_fmt_time(row.at)}  {row.kind:<10} {row.amount:>+14,}  {row.key}")
    finally:
        conn.close()
    return 0


def _consent(conn: engine.Connection, member_id: int) -> bool:
    from backend import store_marketing

    return store_marketing.consents(conn, [member_id]).get(member_id, False)


def _report(args: argparse.Namespace, settings: Settings) -> int:
    since = day_start(parse_day(args.since)) if args.since else None
    last = parse_day(args.until) if args.until else datetime.now(TEHRAN).date()
    until = day_start(last + timedelta(days=1))
    if since is not None and since >= until:
        raise UsageError("--from is after --to")
    conn = _open(args)
    try:
        figures = report.summary(conn, since=since, until=until, **_report_scope(conn, args))
    finally:
        conn.close()
    print(report_render.render(figures, lang=args.lang, fmt=args.format))
    return 0


def _report_scope(conn: engine.Connection, args: argparse.Namespace) -> dict[str, int | str]:
    """The report's cut: the club (default the only one), optionally one branch or terminal."""
    from backend import store_registry

    club_id = _club_id(conn, args)
    scope: dict[str, int | str] = {"club_id": club_id}
    if args.branch:
        b = store_registry.find_branch(conn, club_id, args.branch)
        if b is None:
            raise UsageError(f"the club has no branch {args.branch!r}")
        scope["branch_id"] = b.id
    if args.terminal:
        t = store_registry.terminal(conn, args.terminal)
        if t is None or t.club_id != club_id:
            raise UsageError(f"terminal {args.terminal} is not one of the club's")
        scope["terminal_id"] = t.id
    return scope


def _offer(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    if args.action == "add":
        try:
            offer = Offer(
                name=args.name,
                percent=args.percent or 0.0,
                amount=args.amount or 0,
                start=parse_day(args.start) if args.start else None,
                until=parse_day(args.until),
                weekdays=parse_weekdays(args.weekdays),
                hours=parse_hours(args.hours) if args.hours else None,
                min_purchase=args.min_purchase,
                target=args.target,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if offer.until < now.astimezone(TEHRAN).date():
            raise UsageError(f"--until {offer.until} is already past")
        conn = _open(args)
        try:
            with store.transaction(conn):
                club_id = _club_id(conn, args)
                try:
                    _club_program(conn, club_id, settings).check_target(offer.target)
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
                offer = dataclasses.replace(
                    offer, club_id=club_id, branches=_branch_ids(conn, club_id, args.branches)
                )
                oid = store.add_offer(conn, offer, now)
        finally:
            conn.close()
        print(f"offer {oid} added: {_describe(offer)}")
        return 0
    conn = _open(args)
    try:
        club_id = _club_id(conn, args)
        if args.action == "list":
            found = store.offers(conn, club_id=club_id, include_ended=args.all)
            for o in found:
                print(f"{o.id:>4}  {_describe(o)}{'  (ended)' if o.ended else ''}")
            for o in settings.offers:
                print(f"cfg   {_describe(o)}")
            if not found and not settings.offers:
                print("no offers")
            return 0
        with store.transaction(conn):
            mine = any(o.id == args.offer_id for o in store.offers(conn, club_id=club_id))
            ok = mine and store.end_offer(conn, args.offer_id, now)
        if not ok:
            raise UsageError(f"no running offer with id {args.offer_id}")
        print(f"offer {args.offer_id} ended")
        return 0
    finally:
        conn.close()


def _branch_ids(conn: engine.Connection, club_id: int, names: str | None) -> frozenset[int]:
    from backend import store_registry

    if not names:
        return frozenset()
    ids = set()
    for name in (n.strip() for n in names.split(",")):
        b = store_registry.find_branch(conn, club_id, name) if name else None
        if b is None:
            raise UsageError(f"--branches: the club has no branch {name!r}")
        ids.add(b.id)
    return frozenset(ids)


def _describe(o: Offer) -> str:
    from backend.program import WEEKDAYS

    what = f"+{o.percent:g}%" if o.percent else f"+{o.amount:,} rials"
    parts = [f"{o.name!r} {what}", f"until {o.until}"]
    if o.start:
        parts.append(f"from {o.start}")
    if o.weekdays:
        parts.append("on " + ",".join(WEEKDAYS[d] for d in sorted(o.weekdays)))
    if o.hours:
        parts.append(f"hours {o.hours[0]}-{o.hours[1]}")
    if o.min_purchase:
        parts.append(f"min {o.min_purchase:,}")
    parts.append(f"for {o.target}")
    return ", ".join(parts)


def _card(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    if args.action == "add":
        phone, number = _phone(args.phone), _card_number(args.card)
        conn = _open(args)
        try:
            with store.transaction(conn):
                m = store.member_by_phone(conn, phone, club_id=_club_id(conn, args))
                if m is None:
                    raise UsageError(f"{phone} is not a member")
                owner = store.card_owner(conn, number)
                linked = owner == (m.id, True)  # asked twice: done already, nothing to change
                if owner is not None and owner[0] != m.id:
                    raise UsageError(f"card {number} is already linked to another member")
                if owner is not None and not linked:
                    raise UsageError(f"card {number} was replaced and no longer works")
                if not linked:
                    store.link_card(conn, m.id, number, now)
        finally:
            conn.close()
        print(f"card {number} {'already linked' if linked else 'linked'} to {phone}")
        return 0
    old, new = _card_number(args.old), _card_number(args.new)
    conn = _open(args)
    try:
        with store.transaction(conn):
            owner = store.card_owner(conn, old)
            club_id = _club_id(conn, args)
            theirs = owner is not None and store.member_by_id(conn, owner[0]).club_id == club_id
            if owner is None or not owner[1] or not theirs:
                raise UsageError(f"card {old} is not an active card of the club")
            if store.card_owner(conn, new) is not None:
                raise UsageError(f"card {new} is already issued")
            store.link_card(conn, owner[0], new, now)
            store.retire_card(conn, old, new)
    finally:
        conn.close()
    print(f"card {old} replaced by {new}; the credit stays with the member")
    return 0


def _transfer(args: argparse.Namespace, settings: Settings) -> int:
    from backend import credit_transfer
    from backend.cli_registry import club_of

    conn = _open(args)
    try:
        club = club_of(conn, args.club)
        program = _club_program(conn, club.id, settings)
        try:
            made = credit_transfer.by_operator(
                conn, club.id, args.sender, args.receiver, args.amount, datetime.now(UTC),
                program=program, shop_name=club.name, user="cli")
        except credit_transfer.TransferError as exc:
            raise UsageError(str(exc)) from None
        sender, receiver = (ledger.balance(conn, made.sender_id),
                            ledger.balance(conn, made.receiver_id))
    finally:
        conn.close()
    new = " (enrolled now)" if made.enrolled else ""
    print(f"{args.amount:,} rials transferred; balances: giver {sender:,}, "
          f"receiver{new} {receiver:,}")
    return 0


def _adjust(args: argparse.Namespace, settings: Settings) -> int:
    phone = _phone(args.phone)
    if args.amount == 0:
        raise UsageError("an adjustment of 0 changes nothing")
    now = datetime.now(UTC)
    conn = _open(args)
    try:
        with store.transaction(conn):
            club_id = _club_id(conn, args)
            m = store.member_by_phone(conn, phone, club_id=club_id)
            if m is None:
                raise UsageError(f"{phone} is not a member")
            program = _club_program(conn, club_id, settings)
            key = f"adjustment:{m.id}:{now.timestamp():.6f}"
            try:
                ledger.adjust(conn, m.id, args.amount, key, reason=args.reason, now=now,
                              expires_at=program.credit_expiry(now))
            except ledger.AdjustmentRefused as exc:
                raise UsageError(str(exc)) from None
            bal = ledger.balance(conn, m.id)
    finally:
        conn.close()
    print(f"{phone}: adjusted by {args.amount:+,}; balance {bal:,} rials")
    return 0
