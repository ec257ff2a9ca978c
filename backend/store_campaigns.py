"""SMS campaigns in the database: the campaign, its target query, its queuing, cancel,
counts and effect.

Why here: the target is a query over members (consent, tier, totals, segment, branch) and
the deliveries are outbox rows; both are SQL, which lives in the store layer. The hold-out
choice and the effect are the pure rules of backend/campaign_effect.py; the marketing
gating (consent again at send time, quiet hours, daily limits) is the SMS worker's.

Tables (SCHEMA, one migration step):
- `campaigns`: club, template text, filter (JSON), hold-out share and seed, scheduled time
  (Unix seconds), status, per-part price; `fingerprint` makes a second identical `add`
  return the first campaign instead of a new one.
- `campaign_holdout(campaign_id, member_id)`: the members held out when it was queued, so
  the effect compares the same people later even when the filter would now match others.

Deliveries are outbox rows keyed `campaign:{id}:{member_id}` (queued once, whatever the
number of runs); counts and the reached members are read back by that key prefix.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from backend import campaign_effect, texts
from backend.campaign_effect import PurchaseRecord, WindowEffect
from backend.engine import Connection
from backend.segments import SEGMENTS
from backend.sms_templates import CampaignEstimate, Template, TemplateError, estimate
from protocols.persian import TEHRAN

TABLES = ("campaigns", "campaign_holdout")

SCHEMA = (
    "CREATE TABLE campaigns (id INTEGER PRIMARY KEY, club_id INTEGER NOT NULL "
    "REFERENCES clubs(id), text TEXT NOT NULL, filter TEXT NOT NULL, "
    "holdout REAL NOT NULL DEFAULT 0.1, seed TEXT NOT NULL, scheduled_at INTEGER NOT NULL, "
    "status TEXT NOT NULL DEFAULT 'scheduled' "
    "CHECK (status IN ('scheduled', 'sending', 'done', 'cancelled')), "
    "price_per_part INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, "
    "fingerprint TEXT NOT NULL UNIQUE)",
    "CREATE INDEX campaigns_club ON campaigns(club_id, id)",
    "CREATE TABLE campaign_holdout (campaign_id INTEGER NOT NULL REFERENCES campaigns(id), "
    "member_id INTEGER NOT NULL, PRIMARY KEY (campaign_id, member_id))",
)

#: placeholders a campaign's text may use: what is known of every member and the club
CAMPAIGN_PLACEHOLDERS = ("name", "shop", "tier")
STATUSES = ("scheduled", "sending", "done", "cancelled")
_CHUNK = 500


class _Outbox:
    """backend.sms.outbox, imported on first use: migrations imports this module for its
    SCHEMA before backend.store (which the outbox needs) is importable."""

    def __getattr__(self, name: str) -> object:
        from backend.sms import outbox as module

        return getattr(module, name)


outbox: Any = _Outbox()


class CampaignError(ValueError):
    """A campaign that cannot be saved or changed; the message says why."""


@dataclass(frozen=True, slots=True)
class Filter:
    """Who a campaign is for, within the club's members with marketing consent.

    `visited_before`: last settled purchase before that Tehran day, or none at all (a
    member who never came back is "not seen since"); `visited_after`: on or after it;
    `branch`: has bought at least once in that branch."""

    tier: str | None = None
    segment: str | None = None
    visited_before: date | None = None
    visited_after: date | None = None
    min_spend: int | None = None
    branch: str | None = None

    def to_json(self) -> str:
        d = {k: (v.isoformat() if isinstance(v, date) else v)
             for k, v in asdict(self).items() if v is not None}
        return json.dumps(d, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Filter:
        d = json.loads(text)
        for k in ("visited_before", "visited_after"):
            if d.get(k):
                d[k] = date.fromisoformat(d[k])
        return cls(**d)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in json.loads(self.to_json()).items()]
        return ", ".join(parts) or "every member with consent"


@dataclass(frozen=True, slots=True)
class Target:
    member_id: int
    phone: str
    name: str | None
    tier: str


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    club_id: int
    text: str
    filter: Filter
    holdout: float
    seed: bytes
    scheduled_at: datetime
    status: str
    price_per_part: int
    created_at: datetime = field(compare=False)


@dataclass(frozen=True, slots=True)
class Preview:
    """What the owner sees before sending: the target, its split, parts and cost."""

    targeted: int
    held_out: int
    estimate: CampaignEstimate


def _day_start(d: date) -> int:
    return int(datetime.combine(d, time(0), TEHRAN).timestamp())


def _check(conn: Connection, club_id: int, text: str, f: Filter, holdout: float,
           price_per_part: int) -> Template:
    try:
        template = Template.parse(text, CAMPAIGN_PLACEHOLDERS)
    except TemplateError as exc:
        raise CampaignError(str(exc)) from None
    if f.segment is not None and f.segment not in SEGMENTS:
        raise CampaignError(f"unknown segment {f.segment!r} (known: {', '.join(SEGMENTS)})")
    if f.tier is not None and f.tier not in (known := _tiers(conn, club_id)):
        raise CampaignError(f"unknown tier {f.tier!r} (known: {', '.join(sorted(known))})")
    if f.branch is not None and _branch_id(conn, club_id, f.branch) is None:
        raise CampaignError(f"the club has no branch {f.branch!r}")
    if f.min_spend is not None and f.min_spend < 0:
        raise CampaignError("the minimum spend is a non-negative number of rials")
    if f.visited_before and f.visited_after and f.visited_after >= f.visited_before:
        raise CampaignError("visited-after must be before visited-before")
    if not 0.0 <= holdout < 1.0:
        raise CampaignError("the hold-out share is at least 0 and below 1 (0.1 = 10 %)")
    if not isinstance(price_per_part, int) or price_per_part < 0:
        raise CampaignError("the per-part price is a non-negative number of rials")
    return template


def _tiers(conn: Connection, club_id: int) -> set[str]:
    """The tiers of the club's program (the configuration's default when it has none
    stored) and those its members hold (a program changed since)."""
    from backend.program import Program
    from backend.registry import parse_program
    from backend.store_registry import latest_program

    stored = latest_program(conn, club_id)
    program = parse_program(stored.body) if stored else Program()
    held = {str(r[0]) for r in conn.execute(
        "SELECT DISTINCT tier FROM members WHERE club_id = ?", (club_id,))}
    return {t.name for t in program.tiers} | held


def _branch_id(conn: Connection, club_id: int, name: str) -> int | None:
    row = conn.execute("SELECT id FROM branches WHERE club_id = ? AND name = ?",
                       (club_id, name)).fetchone()
    return int(row[0]) if row else None


def targets(conn: Connection, club_id: int, f: Filter) -> list[Target]:
    """The club's members with marketing consent the filter matches, by member id."""
    sql = ("SELECT m.id, m.phone, m.name, m.tier FROM members m"
           + (" JOIN member_segments s ON s.member_id = m.id" if f.segment else "")
           + " WHERE m.club_id = ? AND m.marketing_consent = 1")
    args: list[object] = [club_id]
    if f.segment:
        sql += " AND s.segment = ?"
        args.append(f.segment)
    if f.tier:
        sql += " AND m.tier = ?"
        args.append(f.tier)
    if f.visited_before:
        sql += " AND (m.last_visit IS NULL OR m.last_visit < ?)"
        args.append(_day_start(f.visited_before))
    if f.visited_after:
        sql += " AND m.last_visit >= ?"
        args.append(_day_start(f.visited_after))
    if f.min_spend is not None:
        sql += " AND m.spend >= ?"
        args.append(f.min_spend)
    if f.branch:
        sql += (" AND EXISTS (SELECT 1 FROM purchases p WHERE p.member_id = m.id"
                " AND p.branch_id = ? AND p.approved = 1 AND p.reversed = 0)")
        args.append(_branch_id(conn, club_id, f.branch))
    rows = conn.execute(sql + " ORDER BY m.id", args).fetchall()
    return [Target(int(r[0]), r[1], r[2], r[3]) for r in rows]


def _values(t: Target, shop: str) -> dict[str, object]:
    tier = texts.TIER_NAMES.get((t.tier or "").lower(), t.tier)  # as the receipt names it
    return {"name": t.name or texts.NO_NAME, "shop": shop, "tier": tier}


def _club_name(conn: Connection, club_id: int) -> str:
    row = conn.execute("SELECT name FROM clubs WHERE id = ?", (club_id,)).fetchone()
    if row is None:
        raise CampaignError(f"no club {club_id}")
    return str(row[0])


def preview(conn: Connection, club_id: int, text: str, f: Filter, *,
            holdout: float = campaign_effect.DEFAULT_HOLDOUT, price_per_part: int = 0
            ) -> Preview:
    """Reach, parts and cost of a campaign not saved yet (the hold-out share's size is
    exact; which members it holds is chosen when the campaign is saved with its seed)."""
    template = _check(conn, club_id, text, f, holdout, price_per_part)
    found = targets(conn, club_id, f)
    n_hold = round(holdout * len(found))
    shop = _club_name(conn, club_id)
    sent = found[: len(found) - n_hold]  # parts are per member: an estimate by name length
    return Preview(len(found), n_hold,
                   estimate(template, (_values(t, shop) for t in sent), price_per_part))


def add(conn: Connection, club_id: int, text: str, f: Filter, *, at: datetime | None,
        now: datetime, holdout: float = campaign_effect.DEFAULT_HOLDOUT,
        price_per_part: int = 0) -> tuple[Campaign, bool]:
    """Save a campaign in the caller's transaction: (the campaign, whether it is new).
    The same club, text, filter and time again returns the first one; `at` None is "now",
    and the same campaign sent now again on the same Tehran day is the first one too (a
    script run twice must not send twice)."""
    _check(conn, club_id, text, f, holdout, price_per_part)
    if at is None:
        scheduled, when = int(outbox.timestamp(now)), f"now:{now.astimezone(TEHRAN).date()}"
    else:
        scheduled, when = int(outbox.timestamp(max(at, now))), str(int(outbox.timestamp(at)))
    fingerprint = hashlib.sha256(json.dumps(
        [club_id, text, f.to_json(), when, holdout], ensure_ascii=False).encode()).hexdigest()
    row = conn.execute(
        "INSERT INTO campaigns (club_id, text, filter, holdout, seed, scheduled_at,"
        " price_per_part, created_at, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
        (club_id, text, f.to_json(), holdout, secrets.token_bytes(16).hex(), scheduled,
         price_per_part, int(outbox.timestamp(now)), fingerprint),
    ).fetchone()
    if row is None:
        existing = conn.execute("SELECT id FROM campaigns WHERE fingerprint = ?",
                                (fingerprint,)).fetchone()
        return get(conn, int(existing[0])), False
    return get(conn, int(row[0])), True


_COLS = ("id, club_id, text, filter, holdout, seed, scheduled_at, status, price_per_part,"
         " created_at")


def _campaign(r: tuple) -> Campaign:
    return Campaign(int(r[0]), int(r[1]), r[2], Filter.from_json(r[3]), float(r[4]),
                    bytes.fromhex(r[5]), datetime.fromtimestamp(r[6], UTC), r[7], int(r[8]),
                    datetime.fromtimestamp(r[9], UTC))


def get(conn: Connection, campaign_id: int) -> Campaign:
    row = conn.execute(f"SELECT {_COLS} FROM campaigns WHERE id = ?",
                       (campaign_id,)).fetchone()
    if row is None:
        raise CampaignError(f"no campaign {campaign_id}")
    return _campaign(row)


def list_campaigns(conn: Connection, club_id: int) -> list[Campaign]:
    return [_campaign(r) for r in conn.execute(
        f"SELECT {_COLS} FROM campaigns WHERE club_id = ? ORDER BY id", (club_id,))]


def prefix(campaign_id: int) -> str:
    return f"campaign:{campaign_id}:"


def enqueue(conn: Connection, campaign_id: int, now: datetime) -> tuple[int, int]:
    """Queue the campaign in the caller's transaction: one outbox row per targeted member
    not held out, due at the scheduled time. (rows queued now, members held out); a
    second run queues nothing twice and keeps the first run's hold-out."""
    c = get(conn, campaign_id)
    if c.status == "cancelled":
        raise CampaignError(f"campaign {campaign_id} is cancelled")
    found = targets(conn, c.club_id, c.filter)
    held_before = holdout_members(conn, campaign_id)
    to_send, held = campaign_effect.split_holdout([t.member_id for t in found], c.seed,
                                                  c.holdout)
    # a member queued by an earlier run stays queued, one held out stays held out
    already = outbox.members_by_prefix(conn, prefix(campaign_id))
    new_held = [m for m in held if m not in held_before and m not in already]
    held_set = held_before | set(new_held)
    if new_held:
        conn.executemany(
            "INSERT INTO campaign_holdout (campaign_id, member_id) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING", [(campaign_id, m) for m in new_held])
    template = Template.parse(c.text, CAMPAIGN_PLACEHOLDERS)
    shop = _club_name(conn, c.club_id)
    sending = (set(to_send) | already) - held_set
    queued = 0
    for t in found:
        if t.member_id in sending:
            queued += outbox.enqueue(
                conn, key=f"{prefix(campaign_id)}{t.member_id}", phone=t.phone,
                text=template.render(_values(t, shop)), kind="campaign", now=now,
                club_id=c.club_id, member_id=t.member_id, not_before=c.scheduled_at)
    if c.status == "scheduled" and now >= c.scheduled_at:
        conn.execute("UPDATE campaigns SET status = 'sending' WHERE id = ?", (campaign_id,))
    return queued, len(held_set)


def holdout_members(conn: Connection, campaign_id: int) -> set[int]:
    return {int(r[0]) for r in conn.execute(
        "SELECT member_id FROM campaign_holdout WHERE campaign_id = ?", (campaign_id,))}


def cancel(conn: Connection, campaign_id: int, now: datetime) -> int:
    """Cancel in the caller's transaction: its pending SMS fail as 'cancelled' (sent and
    in-flight ones are left as they are); how many were stopped."""
    c = get(conn, campaign_id)
    if c.status in ("cancelled", "done"):
        raise CampaignError(f"campaign {campaign_id} is {c.status} already")
    n = outbox.cancel_pending(conn, prefix(campaign_id), now=now, reason="cancelled")
    conn.execute("UPDATE campaigns SET status = 'cancelled' WHERE id = ?", (campaign_id,))
    return n


def counts(conn: Connection, campaign_id: int) -> dict[str, int]:
    """sent, failed, pending (in flight counts as pending) of the campaign's SMS."""
    return outbox.counts_by_prefix(conn, prefix(campaign_id))


def status(conn: Connection, campaign_id: int, now: datetime) -> str:
    """The campaign's status now, written back when it moved on (sending, then done when
    nothing is pending any more)."""
    c = get(conn, campaign_id)
    if c.status in ("cancelled", "done"):
        return c.status
    if now < c.scheduled_at:
        return "scheduled"
    new = "sending" if counts(conn, campaign_id)["pending"] else "done"
    if new != c.status:
        conn.execute("UPDATE campaigns SET status = ? WHERE id = ?", (new, campaign_id))
    return new


def _purchases(conn: Connection, members: list[int], start: datetime,
               days: int) -> list[PurchaseRecord]:
    since = int(start.timestamp())
    until = int((start + timedelta(days=days)).timestamp())
    out: list[PurchaseRecord] = []
    for i in range(0, len(members), _CHUNK):
        chunk = members[i:i + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        out += [PurchaseRecord(int(m), datetime.fromtimestamp(at, UTC), int(amount))
                for m, at, amount in conn.execute(
                    "SELECT member_id, occurred_at, amount FROM purchases"
                    f" WHERE member_id IN ({marks}) AND approved = 1 AND reversed = 0"
                    " AND occurred_at >= ? AND occurred_at < ?", (*chunk, since, until))]
    return out


def effect(conn: Connection, campaign_id: int) -> list[WindowEffect]:
    """Members reached (SMS sent) against the hold-out: buyers and sales within 7 and 30
    days of the scheduled time."""
    c = get(conn, campaign_id)
    reached = outbox.members_by_prefix(conn, prefix(campaign_id), outbox.SENT)
    held = sorted(holdout_members(conn, campaign_id))
    days = max(campaign_effect.WINDOWS)
    purchases = _purchases(conn, sorted(reached) + held, c.scheduled_at, days)
    return campaign_effect.effect(reached, held, purchases, c.scheduled_at)
