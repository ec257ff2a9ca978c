"""The owner's marketing in the demo's day: one SMS campaign and one occasion message.

Both go through the operator's own commands (`club marketing`, `campaign add`,
`automsg set`) and the backend's SMS worker, exactly as a shop's would: the campaign is
queued by `campaign add`, the occasion message by the backend's daily job (its sweep),
and the worker's marketing gate decides what goes today.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jdatetime

from backend import store, store_campaigns
from backend.occasions import load_occasions
from backend.sms import outbox as sms_outbox
from backend.sms.senders import FileSender
from demo.stack import Stack, StackError
from protocols.persian import TEHRAN
from terminal_sim.scenario import backend_command as scenario_backend_command

CAMPAIGN_TIER = "silver"
CAMPAIGN_TEXT = "{shop}: {name}، این هفته برای اعضای {tier} ۱۰٪ تخفیف ویژه داریم."
OCCASION_TEXT = "{shop}: {name}، {occasion} نزدیک است؛ سبد {occasion} شما آماده است."
PRICE_PER_PART = 1_000  # rials, a gateway's price of one Persian SMS part
#: who answers the occasion's SMS with a stop reply, and the campaign sent after it
STOP_WHO = "Reza"
STOP_TEXT = "لغو"
LATER_TEXT = "{shop}: {name}، فردا حراج آخر هفته است."


def command(stack: Stack, *args: str) -> str:
    """An operator command on the demo's backend; UsageError output raises."""
    code, text = scenario_backend_command(stack.db, stack.config_file, stack.python)(
        list(args))
    if code != 0:
        raise StackError(f"loyalty-backend {' '.join(args[:2])} failed: {text.strip()}")
    return text


def next_occasion(today: date) -> tuple[str, str, int]:
    """(key, name, days until it) of the first occasion of the shipped list from `today`."""
    year = jdatetime.date.fromgregorian(date=today).year
    best: tuple[int, str, str] | None = None
    for occ in load_occasions().values():
        for y in (year, year + 1):
            for d in occ.on(y):
                ahead = (d - today).days
                if ahead >= 0 and (best is None or ahead < best[0]):
                    best = (ahead, occ.key, occ.name)
    if best is None:
        raise StackError("the occasions list has no date from today on")
    return best[1], best[2], best[0]


def _sms_lines(outbox: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    if outbox.exists():
        for line in outbox.read_text(encoding="utf-8").splitlines():
            try:
                sms = json.loads(line)
            except ValueError:
                continue
            if sms.get("kind") == kind:
                out.append(sms)
    return out


def _wait_sms(outbox: Path, kind: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not _sms_lines(outbox, kind):
        if time.monotonic() > deadline:
            raise StackError(f"no {kind} SMS was sent within {timeout:.0f} s")
        time.sleep(0.05)


def _pending(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return sms_outbox.counts(conn)["pending"]
    finally:
        conn.close()


def play(day: Any) -> None:
    """The owner's campaign to the silver members, then the coming occasion's message,
    each shown as the members read it; `day` is demo.main's Day."""
    stack: Stack = day.stack
    # the demo's one club is named after its shop
    club = tomllib.loads(stack.config_file.read_text(encoding="utf-8"))["shop"]["name"]
    day.say("-- the owner's marketing --")
    # so the demo shows them whatever the hour; a club keeps 21:00-09:00 by default
    text = command(stack, "club", "marketing", club, "--quiet", "00:00-00:00")
    day.say(f"  club marketing --quiet 00:00-00:00: {text.strip()}")
    day.say(f"owner: an SMS campaign to the {CAMPAIGN_TIER} members, sent now "
            f"(loyalty-backend campaign add --tier {CAMPAIGN_TIER})")
    text = command(stack, "campaign", "add", "--text", CAMPAIGN_TEXT, "--tier",
                   CAMPAIGN_TIER, "--price-per-part", str(PRICE_PER_PART))
    for line in text.strip().splitlines():
        day.say(f"  {line}")
    day.show_sms()
    today = datetime.now(TEHRAN).date()
    key, name, ahead = next_occasion(today)
    day.say(f"owner: switches on the automatic message for {key} ({name}, in {ahead} "
            f"days), sent {ahead} days early: loyalty-backend automsg set occasion:{key} "
            f"--offset {-ahead}")
    text = command(stack, "automsg", "set", f"occasion:{key}", "--offset", str(-ahead),
                   "--template", OCCASION_TEXT)
    day.say(f"  {text.strip()}")
    day.say("  the backend's daily job queues it for every member with marketing consent")
    _wait_sms(stack.outbox, "occasion")
    day.show_sms()
    got = {sms_phone(s) for s in _sms_lines(stack.outbox, "occasion")}
    waiting = _pending(stack.db)
    for who, phone in day.members.items():
        if phone not in got and waiting:
            day.say(f"  {who}'s waits for tomorrow morning: {who} had the campaign's SMS "
                    "today, and a member gets at most one marketing SMS a day")
    stop_reply(day)


def _read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def _member_id(db: Path, phone: str) -> int:
    conn = _read_only(db)
    try:
        club = conn.execute("SELECT MIN(id) FROM clubs").fetchone()[0]  # the demo's one
        member = store.member_by_phone(conn, phone, club_id=club)  # type: ignore[arg-type]
    finally:
        conn.close()
    if member is None:
        raise StackError(f"no member with the phone {phone}")
    return member.id


def campaign_members(db: Path, campaign_id: int) -> set[int]:
    """The members the campaign queued an SMS for (its outbox rows, by key prefix)."""
    conn = _read_only(db)
    try:
        return sms_outbox.members_by_prefix(
            conn, store_campaigns.prefix(campaign_id))  # type: ignore[arg-type]
    finally:
        conn.close()


def consent_of(stack: Stack, phone: str) -> str:
    """The `marketing` line of the operator's `member PHONE`."""
    for line in command(stack, "member", phone).splitlines():
        if line.startswith("marketing"):
            return line.split(None, 1)[1].strip()
    raise StackError(f"loyalty-backend member {phone} printed no marketing line")


def _reply(inbox: Path, phone: str, text: str) -> None:
    """What the gateway reports: one line of the file gateway's inbox, put in place at
    once (written aside, then renamed), so the worker never reads half of it."""
    aside = inbox.with_name(inbox.name + ".writing")
    aside.write_text(json.dumps({"phone": phone, "text": text}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    aside.replace(inbox)


def stop_reply(day: Any) -> None:
    """A member answers with "لغو": the SMS worker reads it from the gateway and turns the
    member's marketing consent off; the next campaign, to every member, skips them."""
    stack: Stack = day.stack
    phone = day.members[STOP_WHO]
    inbox = FileSender(stack.outbox).inbox
    day.say(f"{STOP_WHO} answers the SMS with «{STOP_TEXT}» (the welcome SMS said how to "
            f"stop); the gateway reports the reply ({inbox.name})")
    _reply(inbox, phone, STOP_TEXT)
    deadline = time.monotonic() + 15
    while (said := consent_of(stack, phone)) != "no consent":
        if time.monotonic() > deadline:
            raise StackError(f"the stop reply was not taken within 15 s ({said})")
        time.sleep(0.1)
    day.say(f"  the SMS worker read it: {STOP_WHO}'s marketing consent is off "
            f"(loyalty-backend member: marketing {said})")
    day.say("owner: a second campaign, to every member, no hold-out "
            "(loyalty-backend campaign add --holdout 0)")
    text = command(stack, "campaign", "add", "--text", LATER_TEXT, "--holdout", "0",
                   "--price-per-part", str(PRICE_PER_PART))
    for line in text.strip().splitlines():
        day.say(f"  {line}")
    found = re.search(r"campaign (\d+) added", text)
    if found is None:
        raise StackError(f"campaign add printed no campaign id: {text.strip()}")
    day.stop_reply = (STOP_WHO, phone, int(found.group(1)))
    day.show_sms()
    if _pending(stack.db):
        day.say(f"  not {STOP_WHO}'s: no consent now. The others' wait for tomorrow morning: "
                "each had a marketing SMS today")


def sms_phone(sms: dict[str, Any]) -> str:
    return str(sms.get("phone", ""))


def summary(stack: Stack, out: Any, stopped: tuple[str, str, int] | None = None) -> None:
    """The day's campaigns as the operator's command lists them; the member who replied
    "لغو" (`stopped`: who, phone, the campaign sent after), their consent now and whether
    that campaign skipped them."""
    print("campaigns (loyalty-backend campaign list):", file=out)
    print(command(stack, "campaign", "list").rstrip(), file=out)
    if stopped is None:
        return
    who, phone, later = stopped
    skipped = _member_id(stack.db, phone) not in campaign_members(stack.db, later)
    print(f"{who} replied «{STOP_TEXT}»: marketing consent is now "
          f"{'off' if consent_of(stack, phone) == 'no consent' else 'ON (not taken!)'}; "
          f"campaign {later}, sent after the reply, "
          f"{'skipped' if skipped else 'did NOT skip'} {who} "
          f"({len(campaign_members(stack.db, later))} SMS queued, to the members with "
          "consent)", file=out)
