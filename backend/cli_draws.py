"""`loyalty-backend draw add|list|show|close|entries|run|verify`: prize draws (issue 16).

`add` takes the commitment the owner publishes (`--commitment HEX`), or `--secret-file F`
and prints the commitment of the secret in it (the secret itself is not stored before the
run reveals it). `close` freezes the entries after the period, `entries` writes their CSV,
`run --secret-file F` reveals the secret and draws. `verify` needs no database: anyone
with the revealed secret and the exported CSV prints the same winners as `run`. Phones are
masked in what is printed; the CSV holds member codes only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jdatetime

from backend import draw_job, draws, store, store_draws
from backend.cli import UsageError, parse_day
from backend.draws import DrawError
from backend.segments import SEGMENTS
from protocols.identity import mask_phone


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    dr = sub.add_parser("draw", help="prize draws: define, close, run, verify")
    dsub = dr.add_subparsers(dest="action", required=True)
    add = dsub.add_parser("add", help="define a draw and its published commitment")
    common(add)
    add.add_argument("name")
    add.add_argument("--from", dest="starts", required=True,
                     help="first day, Jalali YYYY/MM/DD (or Gregorian YYYY-MM-DD)")
    add.add_argument("--to", dest="ends", required=True, help="last day, Jalali YYYY/MM/DD")
    add.add_argument("--segment", choices=SEGMENTS,
                     help="only members of this segment (default: everyone who bought)")
    tickets = add.add_mutually_exclusive_group(required=True)
    tickets.add_argument("--per-purchase", type=int, help="tickets per settled purchase")
    tickets.add_argument("--per-rials", type=int, help="one ticket per N rials spent")
    add.add_argument("--prizes", type=int, required=True, help="how many prizes")
    seed = add.add_mutually_exclusive_group(required=True)
    seed.add_argument("--commitment", help="SHA-256 (hex) of the secret you will reveal")
    seed.add_argument("--secret-file", help="a file holding the secret (16+ characters)")
    lst = dsub.add_parser("list", help="the club's draws")
    common(lst)
    show = dsub.add_parser("show", help="a draw: commitment, state, entries, winners")
    common(show)
    show.add_argument("name")
    close = dsub.add_parser("close", help="after the period: freeze and export the entries")
    common(close)
    close.add_argument("name")
    close.add_argument("--out", help="write the entries CSV here (never overwritten)")
    ent = dsub.add_parser("entries", help="the frozen entries as CSV entry,tickets")
    common(ent)
    ent.add_argument("name")
    ent.add_argument("--out", help="write the CSV here (default: print it)")
    run = dsub.add_parser("run", help="reveal the secret and draw the winners")
    common(run)
    run.add_argument("name")
    run.add_argument("--secret-file", required=True, help="the file holding the secret")
    for sp in (add, lst, show, close, ent, run):
        sp.add_argument("--club", help="the club (default: the only one)")
    ver = dsub.add_parser("verify", help="re-run a draw from its seed and entries (no DB)")
    ver.add_argument("--seed", required=True, help="the revealed secret, or a file holding it")
    ver.add_argument("--entries", required=True, help="the exported CSV entry,tickets")
    ver.add_argument("--prizes", required=True, type=int, help="how many prizes")
    ver.add_argument("--commitment", help="also check the seed against this commitment")
    ver.add_argument("--config", help=argparse.SUPPRESS)


def _read_secret(path: str) -> str:
    """A secret file's text without its final line break (an editor adds one)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the secret file {path}: {exc}") from None
    return text.rstrip("\r\n")


def _jalali(day: date) -> str:
    return jdatetime.date.fromgregorian(date=day).strftime("%Y/%m/%d")


def _write_new(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError(f"{path} exists already; the CSV is never overwritten") from None
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def verify(args: argparse.Namespace) -> int:
    """Pure: the secret and the CSV give the winners, one per line in prize order."""
    seed = _read_secret(args.seed) if os.path.isfile(args.seed) else args.seed
    try:
        text = Path(args.entries).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the entries file {args.entries}: {exc}") from None
    try:
        winners = draws.verify(seed, text, args.prizes, args.commitment)
    except DrawError as exc:
        raise UsageError(str(exc)) from None
    for k, code in enumerate(winners, start=1):
        print(f"{k}\t{code}")
    return 0


def run(args: argparse.Namespace, settings: Any) -> int:
    from backend.cli_registry import club_of

    now = datetime.now(UTC)
    commitment = args.commitment if args.action == "add" else None
    if args.action == "add" and args.secret_file:
        try:
            commitment = draws.commitment(_read_secret(args.secret_file))
        except DrawError as exc:
            raise UsageError(str(exc)) from None
    secret = _read_secret(args.secret_file) if args.action == "run" else ""
    if args.action in ("close", "entries") and args.out and os.path.exists(args.out):
        raise UsageError(f"{args.out} exists already; the CSV is never overwritten")
    conn = store.connect(args.db)
    try:
        try:
            with store.transaction(conn):
                club = club_of(conn, args.club)
                if args.action == "add":
                    return _add(conn, args, club.id, str(commitment), now)
                if args.action == "list":
                    return _list(conn, club.id)
                if args.action == "show":
                    return _show(conn, club.id, args.name)
                if args.action == "close":
                    frozen = draw_job.close(conn, club.id, args.name, now)
                    text = draw_job.entries_csv(frozen)
                elif args.action == "entries":
                    text = draw_job.export(conn, draw_job.find(conn, club.id, args.name))
                else:
                    won = draw_job.run(conn, club.id, args.name, secret, now, club.name)
        except DrawError as exc:
            raise UsageError(str(exc)) from None
    finally:
        conn.close()
    if args.action == "close":
        tickets = sum(e.tickets for e in frozen)
        print(f"draw {args.name!r} closed: {len(frozen)} entries, {tickets} tickets"
              + (f"; entries CSV in {args.out}" if args.out else ""))
        if args.out:
            _write_new(args.out, text)
    elif args.action == "entries":
        if args.out:
            _write_new(args.out, text)
            print(f"entries CSV in {args.out}")
        else:
            print(text, end="")
    else:
        for w in won:
            print(f"{w.prize}\t{w.code}\t{mask_phone(w.phone)}")
    return 0


def _add(conn: Any, args: argparse.Namespace, club_id: int, commitment: str,
         now: datetime) -> int:
    d = draw_job.Definition(
        name=args.name, starts_on=parse_day(args.starts), ends_on=parse_day(args.ends),
        segment=args.segment, per_purchase=args.per_purchase, per_rials=args.per_rials,
        prizes=args.prizes, commitment=commitment)
    draw = draw_job.add(conn, club_id, d, now)
    print(f"draw {draw.name!r} added: {_jalali(draw.starts_on)} to {_jalali(draw.ends_on)}, "
          f"{draw.who}, {draw.tickets_rule}, {draw.prizes} prizes")
    print(f"commitment (publish it now): {draw.commitment}")
    return 0


def _list(conn: Any, club_id: int) -> int:
    for d in store_draws.list_draws(conn, club_id):
        print(f"{d.name}\t{d.state}\t{_jalali(d.starts_on)}-{_jalali(d.ends_on)}\t{d.who}\t"
              f"{d.tickets_rule}\t{d.prizes} prizes")
    return 0


def _show(conn: Any, club_id: int, name: str) -> int:
    d = draw_job.find(conn, club_id, name)
    frozen = store_draws.entries(conn, d.id)
    print(f"draw {d.name!r}: {d.state}")
    print(f"period: {_jalali(d.starts_on)} to {_jalali(d.ends_on)} (Tehran days)")
    print(f"who: {d.who}; tickets: {d.tickets_rule}; prizes: {d.prizes}")
    print(f"commitment: {d.commitment}")
    if d.state != "open":
        print(f"entries: {len(frozen)}, tickets: {sum(e.tickets for e in frozen)}")
    if d.secret is not None:
        print(f"revealed secret: {d.secret}")
    for w in store_draws.winners(conn, d.id):
        print(f"prize {w.prize}: {w.code} {mask_phone(w.phone)}")
    return 0
