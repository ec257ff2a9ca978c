"""`loyalty-backend club|branch|terminal|program`: the provider's registry commands.

Registered from backend/cli.py (`add_parsers`, `HANDLERS`). Every command checks its
arguments first and changes nothing on an error (a message, exit status 2).

How `terminal add` reaches the broker: through the dynamic security plugin's
administrator, named by `[mqtt] admin_username` and `admin_password_file` of the backend's
config (or `--broker-admin` and `--broker-admin-password-file`), at `[mqtt] broker` (or
`--broker`). With one, `terminal add` creates the terminal's own login (user name = the
terminal id, a fresh password) and `terminal disable|enable` disables and enables it,
while the broker runs. The database change and the broker change go together: the
registry's transaction commits only after the broker has accepted, and a broker change
is taken back when the agent configuration cannot be written. Without an administrator
the registry alone changes (a broker with password files is the operator's to edit),
and `--agent-config` is refused, as it would have no broker login to hold.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend import engine, member_tokens, store, store_registry
from backend.cli import PROG, UsageError
from backend.config import ConfigError, Settings, parse_program, program_toml
from backend.registry import CONFIG_VERSION
from backend.store_registry import Club, RegistryError
from protocols import mqtt as schema
from protocols.persian import TEHRAN, jalali

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The registry's commands on the main parser's subcommands."""
    club = sub.add_parser("club", help="clubs: one business's loyalty program each")
    csub = club.add_subparsers(dest="action", required=True)
    add = csub.add_parser("add", help="a new club, with its branch main")
    common(add)
    add.add_argument("name", help="the club's unique name, on receipts and SMS")
    add.add_argument("--program", help="its program (TOML of [program] and [otp])")
    common(csub.add_parser("list", help="every club"))
    show = csub.add_parser("show", help="a club: branches, terminals, program, SMS")
    common(show)
    show.add_argument("name")
    sms = csub.add_parser("sms", help="the club's own SMS gateway (or the provider's)")
    common(sms)
    sms.add_argument("name")
    how = sms.add_mutually_exclusive_group(required=True)
    how.add_argument("--file", help="write its SMS to this file (tests, demos)")
    how.add_argument("--kavenegar-line", help="send through Kavenegar from this line number")
    how.add_argument("--default", action="store_true", help="use the provider's gateway")
    sms.add_argument("--api-key-env", help="environment variable holding its Kavenegar key")
    pub = csub.add_parser("public-url", help="where the members' own pages are served")
    common(pub)
    pub.add_argument("name")
    pub.add_argument("url", help="https://club.example.ir, or 'none' for no links in SMS")
    mkt = csub.add_parser("marketing", help="the club's quiet hours and daily marketing SMS limit")
    common(mkt)
    mkt.add_argument("name")
    mkt.add_argument("--quiet", help="no marketing SMS in these Tehran hours, HH:MM-HH:MM "
                     "(default 21:00-09:00; 00:00-00:00: none)")
    mkt.add_argument("--daily-limit", help="marketing SMS a Tehran day for the club "
                     "(a number, or 'none')")
    mkt.add_argument("--consent-at-enrolment", choices=("yes", "no"), help="whether "
                     "enrolling gives marketing consent (default yes)")
    mkt.add_argument("--sms-price", help="rials the gateway charges for one SMS part "
                     "(the campaigns' cost estimate)")

    from backend import cli_automsg

    cli_automsg.add_parsers(sub, common)

    branch = sub.add_parser("branch", help="branches: the shops of a club")
    bsub = branch.add_subparsers(dest="action", required=True)
    badd = bsub.add_parser("add", help="a new branch of a club")
    common(badd)
    badd.add_argument("name")
    badd.add_argument("--club", help="the club (default: the only one)")
    blist = bsub.add_parser("list", help="branches")
    common(blist)
    blist.add_argument("--club")

    term = sub.add_parser("terminal", help="terminals (field 41) and their broker logins")
    tsub = term.add_subparsers(dest="action", required=True)
    tadd = tsub.add_parser("add", help="register a terminal in a branch")
    common(tadd)
    tadd.add_argument("tid", help="terminal id, 8 characters (field 41)")
    tadd.add_argument("--merchant-id", required=True, help="merchant id, 15 characters (42)")
    tadd.add_argument("--club", help="the club (default: the only one)")
    tadd.add_argument("--branch", default="main", help="the club's branch (default: main)")
    tadd.add_argument(
        "--agent-config", help="write the terminal's agent config here (mode 600)"
    )
    _broker_options(tadd)
    tlist = tsub.add_parser("list", help="terminals, and unknown ones seen")
    common(tlist)
    tlist.add_argument("--club")
    for action, what in (("disable", "refuse its requests and broker login"),
                         ("enable", "take its requests and broker login again")):  # fmt: skip
        sp = tsub.add_parser(action, help=what)
        common(sp)
        sp.add_argument("tid")
        _broker_options(sp)

    prog = sub.add_parser("program", help="a club's program, with versions")
    psub = prog.add_subparsers(dest="action", required=True)
    pshow = psub.add_parser("show", help="the program in force and its versions")
    common(pshow)
    pshow.add_argument("club")
    pexp = psub.add_parser("export", help="the program in force, as TOML ('-': stdout)")
    common(pexp)
    pexp.add_argument("club")
    pexp.add_argument("file")
    pimp = psub.add_parser("import", help="a new version from TOML; checked first")
    common(pimp)
    pimp.add_argument("club")
    pimp.add_argument("file")
    pimp.add_argument("--author", help="who changed it (default: the login name)")


def _broker_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--broker", help="HOST:PORT of the broker (or [mqtt] broker)")
    sp.add_argument("--broker-admin", help="its administrator (or [mqtt] admin_username)")
    sp.add_argument(
        "--broker-admin-password-file",
        help="file holding the administrator's password (or [mqtt] admin_password_file)",
    )
    sp.add_argument("--broker-ca", help="CA file: connect with TLS (or [mqtt] ca_file)")


# --- shared ------------------------------------------------------------------------------


def club_of(conn: engine.Connection, name: str | None) -> Club:
    """The club named, or the only one; a database of several clubs needs the name."""
    if name is not None:
        club = store_registry.find_club(conn, name)
        if club is None:
            known = ", ".join(c.name for c in store_registry.list_clubs(conn))
            raise UsageError(f"no club {name!r} (clubs: {known or 'none'})")
        return club
    clubs = store_registry.list_clubs(conn)
    if len(clubs) == 1:
        return clubs[0]
    if not clubs:
        raise UsageError("the database has no club (club add NAME)")
    raise UsageError(
        f"the database has {len(clubs)} clubs: name one with --club "
        f"({', '.join(c.name for c in clubs)})"
    )


def _time(when: datetime) -> str:
    return f"{jalali(when)} ({when.astimezone(TEHRAN):%Y-%m-%d %H:%M})"


def _read_program(path: str) -> str:
    """The TOML of a program file, checked in full (ConfigError naming the key)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8") from None
    try:
        parse_program(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    except ConfigError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return text


def _author(given: str | None) -> str:
    if given:
        return given
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- club --------------------------------------------------------------------------------


def _club(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    if args.action == "add":
        body = _read_program(args.program) if args.program else None
        conn = store.connect(args.db)
        try:
            with store.transaction(conn):
                try:
                    club = store_registry.add_club(conn, args.name, now)
                except RegistryError as exc:
                    raise UsageError(str(exc)) from None
                if body is not None:
                    store_registry.add_program(conn, club.id, body, _author(None), now)
        finally:
            conn.close()
        extra = ", program version 1" if body is not None else ", the configuration's program"
        print(f"club {club.name!r} added with its branch main{extra}")
        return 0
    conn = store.connect(args.db)
    try:
        if args.action == "list":
            versions = store_registry.latest_program_versions(conn)
            print(f"{'club':<24} {'branches':>8} {'terminals':>9} {'members':>8}  program")
            for c in store_registry.list_clubs(conn):
                n = store_registry.club_counts(conn, c.id)
                v = versions.get(c.id, CONFIG_VERSION)
                print(f"{c.name:<24} {n['branches']:>8} {n['terminals']:>9} "
                      f"{n['members']:>8}  {_version_text(v)}")  # fmt: skip
            return 0
        club = club_of(conn, args.name)
        if args.action == "sms":
            sms = _sms_settings(args)
            with store.transaction(conn):
                store_registry.set_club_sms(conn, club.id, sms)
            print(f"club {club.name!r}: SMS {_sms_text(sms)}")
            return 0
        if args.action == "public-url":
            try:
                url = None if args.url == "none" else member_tokens.public_url(args.url)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            with store.transaction(conn):
                store_registry.set_public_url(conn, club.id, url)
            print(f"club {club.name!r}: members' pages at {url or '(none: no links in SMS)'}")
            return 0
        if args.action == "marketing":
            from backend import store_marketing

            rules = _marketing_settings(store_marketing.settings(conn, club.id), args)
            with store.transaction(conn):
                store_marketing.set_settings(conn, club.id, rules)
                if args.consent_at_enrolment is not None:
                    store_marketing.set_consent_at_enrolment(
                        conn, club.id, args.consent_at_enrolment == "yes")
                if args.sms_price is not None:
                    try:
                        store_marketing.set_sms_price(conn, club.id, _sms_price(args.sms_price))
                    except store_marketing.SettingsError as exc:
                        raise UsageError(f"marketing settings: {exc}") from None
            print(f"club {club.name!r}: marketing {_marketing_text(rules)}, consent at "
                  f"enrolment {_yes(store_marketing.consent_at_enrolment(conn, club.id))}, "
                  f"{store_marketing.sms_price(conn, club.id)} rials an SMS part")
            return 0
        n = store_registry.club_counts(conn, club.id)
        latest = store_registry.latest_program(conn, club.id)
        print(f"club      {club.name}")
        print(f"created   {_time(club.created_at)}")
        print(f"program   {_version_text(latest.version if latest else CONFIG_VERSION)}")
        print(f"sms       {_sms_text(club.sms)}")
        print(f"pages     {club.public_url or '(no public address: no links in SMS)'}")
        from backend import store_marketing

        print(f"marketing {_marketing_text(store_marketing.settings(conn, club.id))}")
        print(f"members   {n['members']}")
        print(f"offers    {n['offers']} running")
        terminals = store_registry.list_terminals(conn, club.id)
        for b in store_registry.list_branches(conn, club.id):
            tids = [t for t in terminals if t.branch_id == b.id]
            print(f"branch    {b.name}: {len(tids)} terminal(s)")
            for t in tids:
                print(f"  terminal {t.id} {t.merchant_id or '(any merchant)'}"
                      f"{'' if t.enabled else '  DISABLED'}")  # fmt: skip
    finally:
        conn.close()
    return 0


def _marketing_settings(now: Any, args: argparse.Namespace) -> Any:
    """The club's marketing settings with the options given changed; bad input: UsageError."""
    from backend.store_marketing import SettingsError, changed_settings

    try:
        return changed_settings(now, quiet=args.quiet, daily_limit=args.daily_limit)
    except SettingsError as exc:
        raise UsageError(f"marketing settings: {exc}") from None


def _sms_price(text: str) -> int:
    from protocols.persian import ascii_digits

    digits = ascii_digits(text.strip()).replace(",", "").replace("٬", "")
    if not digits.isascii() or not digits.isdigit():
        raise UsageError(f"marketing settings: the SMS price is a number of rials, not {text!r}")
    return int(digits)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _marketing_text(s: Any) -> str:
    quiet = f"{s.quiet_start:%H:%M}-{s.quiet_end:%H:%M}"
    limit = "no daily limit" if s.club_daily is None else f"at most {s.club_daily} a day"
    return f"quiet {quiet} Tehran, {limit}, {s.member_daily} a member a day"


def _version_text(version: int) -> str:
    return f"version {version}" if version else "the configuration's (version 0)"


def _sms_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The club's [sms] table, checked as the backend's own is (make_sender)."""
    from backend.sms.senders import make_sender

    if args.default:
        if args.api_key_env:
            raise UsageError("--api-key-env goes with --kavenegar-line")
        return None
    if args.file:
        if args.api_key_env:
            raise UsageError("--api-key-env goes with --kavenegar-line")
        sms: dict[str, Any] = {"sender": "file", "file": args.file}
    else:
        if not args.api_key_env:
            raise UsageError("--kavenegar-line needs --api-key-env VAR (the key is never stored)")
        sms = {
            "sender": "kavenegar",
            "kavenegar": {"line": args.kavenegar_line, "api_key_env": args.api_key_env},
        }
    if "kavenegar" in sms:
        line = args.kavenegar_line.strip()
        if not line.isdigit():
            raise UsageError(f"--kavenegar-line {args.kavenegar_line!r}: the line is a number")
        if not _ENV_NAME.fullmatch(args.api_key_env):
            raise UsageError(f"--api-key-env {args.api_key_env!r} is not a variable name")
        sms["kavenegar"]["line"] = line
    else:
        try:
            make_sender(sms, base_dir=Path("."))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return sms


def _sms_text(sms: dict[str, Any] | None) -> str:
    if sms is None:
        return "the provider's gateway"
    if sms.get("sender") == "file":
        return f"to the file {sms.get('file')}"
    kav = sms.get("kavenegar", {})
    return f"Kavenegar, line {kav.get('line')}, key in ${kav.get('api_key_env')}"


# --- branch ------------------------------------------------------------------------------


def _branch(args: argparse.Namespace, settings: Settings) -> int:
    conn = store.connect(args.db)
    try:
        if args.action == "add":
            with store.transaction(conn):
                club = club_of(conn, args.club)
                try:
                    store_registry.add_branch(conn, club.id, args.name, datetime.now(UTC))
                except RegistryError as exc:
                    raise UsageError(f"club {club.name!r}: {exc}") from None
            print(f"branch {args.name!r} added to club {club.name!r}")
            return 0
        club_id = club_of(conn, args.club).id if args.club else None
        clubs = {c.id: c.name for c in store_registry.list_clubs(conn)}
        terminals = store_registry.list_terminals(conn, club_id)
        for b in store_registry.list_branches(conn, club_id):
            n = sum(1 for t in terminals if t.branch_id == b.id)
            print(f"{clubs[b.club_id]:<24} {b.name:<20} {n:>4} terminal(s)")
    finally:
        conn.close()
    return 0


# --- terminal ----------------------------------------------------------------------------


def _broker_admin(args: argparse.Namespace, settings: Settings) -> tuple[str, str, str] | None:
    """(broker, administrator, password) when an administrator is configured, else None."""
    user = args.broker_admin or settings.mqtt.admin_username
    pw_file = args.broker_admin_password_file or settings.mqtt.admin_password_file
    if not user and not pw_file:
        return None
    if not user or not pw_file:
        raise UsageError(
            "the broker's administrator needs both a user name and a password file "
            "(--broker-admin and --broker-admin-password-file, or [mqtt] admin_username "
            "and admin_password_file)"
        )
    try:
        password = Path(pw_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{pw_file}: cannot read the administrator's password: {exc}") from None
    if not password:
        raise UsageError(f"{pw_file}: the administrator's password file is empty")
    broker = args.broker or settings.mqtt.broker
    if not broker:
        raise UsageError("the broker's address is needed: --broker HOST:PORT or [mqtt] broker")
    return broker, user, password


def _access(admin: tuple[str, str, str], args: argparse.Namespace, settings: Settings) -> Any:
    from backend.broker_access import BrokerAccess

    try:
        return BrokerAccess(*admin, ca_file=args.broker_ca or settings.mqtt.ca_file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _terminal(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        return _terminal_list(args)
    try:
        tid = schema.check_terminal_id(args.tid)
    except schema.SchemaError as exc:
        raise UsageError(str(exc)) from None
    admin = _broker_admin(args, settings)
    if args.action == "add":
        return _terminal_add(args, settings, tid, admin)
    enable = args.action == "enable"
    conn = store.connect(args.db)
    try:
        with store.transaction(conn):
            t = store_registry.terminal(conn, tid)
            if t is None:
                raise UsageError(f"terminal {tid} is not registered")
            store_registry.set_terminal_enabled(conn, tid, enable)
            broker_note = "; broker login unchanged (no broker administrator configured)"
            if admin is not None and t.broker_user:
                # before COMMIT: a broker that refuses leaves the registry as it was
                from backend.broker_access import BrokerAccessError
                from backend.dynsec import DynsecError

                try:
                    with _access(admin, args, settings) as access:
                        if enable:
                            access.enable_terminal(t.broker_user)
                        else:
                            access.disable_terminal(t.broker_user)
                except (BrokerAccessError, DynsecError) as exc:
                    raise UsageError(f"nothing changed: {exc}") from None
                broker_note = f"; broker login {t.broker_user} {args.action}d"
            elif admin is not None:
                broker_note = "; it has no broker login of its own"
    finally:
        conn.close()
    print(f"terminal {tid} {args.action}d{broker_note}")
    return 0


def _terminal_add(
    args: argparse.Namespace,
    settings: Settings,
    tid: str,
    admin: tuple[str, str, str] | None,
) -> int:
    from backend import agent_config
    from backend.broker_access import BrokerAccessError
    from backend.dynsec import DynsecError

    try:
        mid = schema.check_merchant_id(args.merchant_id)
    except schema.SchemaError as exc:
        raise UsageError(str(exc)) from None
    config_path = Path(args.agent_config) if args.agent_config else None
    if config_path is not None:
        if admin is None:
            raise UsageError(
                "--agent-config needs the broker's administrator to create the terminal's "
                "login ([mqtt] admin_username and admin_password_file, or --broker-admin "
                "and --broker-admin-password-file)"
            )
        if config_path.exists():
            raise UsageError(f"{config_path} already exists; it is not replaced")
        if not config_path.parent.is_dir():
            raise UsageError(f"{config_path}: no such folder {config_path.parent}")
    now = datetime.now(UTC)
    key = None
    conn = store.connect(args.db)
    try:
        with store.transaction(conn):
            club = club_of(conn, args.club)
            branch = store_registry.find_branch(conn, club.id, args.branch)
            if branch is None:
                names = ", ".join(b.name for b in store_registry.list_branches(conn, club.id))
                raise UsageError(f"club {club.name!r} has no branch {args.branch!r} ({names})")
            try:
                store_registry.add_terminal(
                    conn, tid, mid, branch.id, now, broker_user=tid if admin else None
                )
            except RegistryError as exc:
                raise UsageError(str(exc)) from None
            if admin is not None:
                # the broker first, the file next, COMMIT last: any failure undoes the rest
                try:
                    with _access(admin, args, settings) as access:
                        password = access.add_terminal(tid)
                        if config_path is not None:
                            try:
                                key = agent_config.write_agent_config(
                                    config_path,
                                    terminal_id=tid,
                                    merchant_id=mid,
                                    broker=admin[0],
                                    broker_username=tid,
                                    broker_password=password,
                                    broker_ca_file=args.broker_ca or settings.mqtt.ca_file,
                                )
                            except agent_config.AgentConfigError as exc:
                                access.remove_terminal(tid)
                                raise UsageError(f"nothing changed: {exc}") from None
                except (BrokerAccessError, DynsecError) as exc:
                    raise UsageError(f"nothing changed: {exc}") from None
    finally:
        conn.close()
    where = f"club {club.name!r}, branch {branch.name!r}"
    print(f"terminal {tid} (merchant {mid}) registered in {where}")
    if admin is not None:
        print(f"broker login {tid} created at {admin[0]}")
    if config_path is not None and key is not None:
        print(f"agent config written to {config_path} (mode 600)")
        print(f"MAC key (shown once; load it into the bank terminal): {key.hex()}")
    return 0


def _terminal_list(args: argparse.Namespace) -> int:
    conn = store.connect(args.db)
    try:
        club_id = club_of(conn, args.club).id if args.club else None
        terminals = store_registry.list_terminals(conn, club_id)
        unknown = store_registry.list_unknown_terminals(conn)
    finally:
        conn.close()
    if not terminals:
        print("no terminal registered")
    for t in terminals:
        state = "enabled" if t.enabled else "DISABLED"
        print(f"{t.id}  {t.merchant_id or '(any merchant)':<15}  {t.club:<20} "
              f"{t.branch:<16} {state}")  # fmt: skip
    if unknown:
        print("unknown terminals seen (refused with 96, not registered or disabled):")
        for u in unknown:
            print(f"  {u.terminal_id}  {u.merchant_id:<15}  {u.count:>6} request(s), "
                  f"first {_time(u.first_seen)}, last {_time(u.last_seen)}")  # fmt: skip
    return 0


# --- program -----------------------------------------------------------------------------


def _program(args: argparse.Namespace, settings: Settings) -> int:
    body = _read_program(args.file) if args.action == "import" else None
    if args.action == "export" and args.file != "-" and Path(args.file).exists():
        raise UsageError(f"{args.file} already exists; it is not replaced")
    conn = store.connect(args.db)
    try:
        club = club_of(conn, args.club)
        if args.action == "import":
            assert body is not None
            program = parse_program(tomllib.loads(body))
            with store.transaction(conn):
                for offer in store.offers(conn, club_id=club.id):
                    try:
                        program.check_target(offer.target)
                    except ValueError as exc:
                        raise UsageError(
                            f"{args.file}: offer {offer.id} ({offer.name!r}) of the club: {exc}; "
                            "nothing changed"
                        ) from None
                v = store_registry.add_program(
                    conn, club.id, body, _author(args.author), datetime.now(UTC)
                )
            print(f"club {club.name!r}: program version {v.version} by {v.author}; running "
                  "backends apply it within seconds")  # fmt: skip
            return 0
        latest = store_registry.latest_program(conn, club.id)
        text = latest.body if latest else program_toml(settings.program)
        if args.action == "export":
            if args.file == "-":
                sys.stdout.write(text)
            else:
                Path(args.file).write_text(text, encoding="utf-8")
                print(f"club {club.name!r}: {_version_text(latest.version if latest else 0)} "
                      f"written to {args.file}")  # fmt: skip
            return 0
        print(f"# club {club.name}: {_version_text(latest.version if latest else 0)}")
        for v in store_registry.program_history(conn, club.id):
            print(f"# version {v.version}: {_time(v.created_at)} by {v.author}")
        sys.stdout.write(text)
    finally:
        conn.close()
    return 0


def _automsg(args: argparse.Namespace, settings: Settings) -> int:
    from backend import cli_automsg

    return cli_automsg.run(args, settings)


HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "club": _club,
    "branch": _branch,
    "terminal": _terminal,
    "program": _program,
    "automsg": _automsg,
}
__all__ = ["HANDLERS", "PROG", "add_parsers", "club_of"]
