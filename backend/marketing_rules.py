"""When a queued SMS may go: consent, quiet hours and daily limits, as a state machine.

In the manner of firmware_bridge.link: the `Delivery` object is fed messages, consent
changes, replies and the current time; it answers which messages go now and when it next
wants to be woken. It reads no clock and starts no thread, so the SMS worker drives it
and the tests drive it with a fake clock.

Rules (docs/campaigns.md):
- transactional messages (purchase, reversal, one-time code) always go at once;
- marketing messages (campaigns, occasions, win-back) need the member's consent when they
  go (a message queued before "لغو" is dropped, not sent);
- none in quiet hours (21:00-09:00 Tehran by default): they wait for the end;
- at most `member_daily` (1) marketing SMS per member per Tehran day, and at most
  `club_daily` per club per Tehran day: the rest wait for the next morning.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from protocols.persian import TEHRAN

TRANSACTIONAL = "transactional"
MARKETING = "marketing"
#: What each outbox kind is; an unknown kind is refused rather than guessed.
KIND_CLASS: dict[str, str] = {
    "purchase": TRANSACTIONAL,
    "reversal": TRANSACTIONAL,
    "otp": TRANSACTIONAL,
    "welcome": TRANSACTIONAL,
    "transfer": TRANSACTIONAL,
    "campaign": MARKETING,
    "occasion": MARKETING,
    "winback": MARKETING,
    "birthday": MARKETING,
    "anniversary": MARKETING,
    "expiring": MARKETING,
    "tier_up": MARKETING,
    "survey": MARKETING,
    "draw": TRANSACTIONAL,  # a winner's notice
    "link": TRANSACTIONAL,  # a fresh link to the member's own page, asked for by the member
    "giftcard": TRANSACTIONAL,  # a gift card's balance notice
    "other": TRANSACTIONAL,  # the outbox's catch-all: operators' notices, never marketing
}
STOP_WORD = "لغو"
_IGNORED = {"\u200c", "\u200d", "\u200e", "\u200f", " ", "\t", "\n", "\r", ".", "!"}


def is_stop_reply(text: str) -> bool:
    """A reply that revokes marketing consent: "لغو", with spaces, ZWNJ or a number after
    it ("لغو ۱۱", as operators' opt-out lines write it)."""
    core = "".join(c for c in text if c not in _IGNORED)
    return core.startswith(STOP_WORD) and core[len(STOP_WORD):].strip("0123456789۰۱۲۳۴۵۶۷۸۹") == ""


@dataclass(frozen=True, slots=True)
class Settings:
    quiet_start: time = time(21, 0)
    quiet_end: time = time(9, 0)
    club_daily: int | None = None  # marketing SMS per club per Tehran day
    member_daily: int = 1

    def __post_init__(self) -> None:
        if self.club_daily is not None and self.club_daily < 0:
            raise ValueError("club_daily cannot be negative")
        if self.member_daily < 1:
            raise ValueError("member_daily must be at least 1")

    def quiet(self, when: datetime) -> bool:
        t = when.astimezone(TEHRAN).time()
        if self.quiet_start == self.quiet_end:
            return False
        if self.quiet_start > self.quiet_end:  # across midnight, the default
            return t >= self.quiet_start or t < self.quiet_end
        return self.quiet_start <= t < self.quiet_end

    def open_from(self, when: datetime) -> datetime:
        """The first instant at or after `when` outside quiet hours."""
        if not self.quiet(when):
            return when
        local = when.astimezone(TEHRAN)
        end = datetime.combine(local.date(), self.quiet_end, tzinfo=TEHRAN)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.quiet_end, TEHRAN)
        return end

    def morning_after(self, day: date) -> datetime:
        """The first open instant of the Tehran day after `day`."""
        return self.open_from(datetime.combine(day + timedelta(days=1), time(0), TEHRAN))


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    member_id: int
    kind: str
    due_at: datetime

    def __post_init__(self) -> None:
        if self.kind not in KIND_CLASS:
            raise ValueError(f"unknown message kind {self.kind!r}")
        if self.due_at.tzinfo is None:
            raise ValueError("due_at must be timezone-aware")

    @property
    def marketing(self) -> bool:
        return KIND_CLASS[self.kind] == MARKETING


@dataclass(frozen=True, slots=True)
class Release:
    message: Message
    at: datetime


@dataclass(frozen=True, slots=True)
class Dropped:
    message: Message
    at: datetime
    reason: str


def _day(when: datetime) -> date:
    return when.astimezone(TEHRAN).date()


class Delivery:
    """The delivery rules of one club. `sent` seeds it with marketing SMS already sent
    (member, instant), e.g. today's from the outbox after a restart."""

    def __init__(
        self,
        settings: Settings | None = None,
        consents: Mapping[int, bool] | None = None,
        sent: Iterable[tuple[int, datetime]] = (),
    ) -> None:
        self.settings = settings or Settings()
        self._consent: dict[int, bool] = dict(consents or {})
        self._pending: dict[str, Message] = {}
        self._member_day: dict[tuple[int, date], int] = {}
        self._club_day: dict[date, int] = {}
        for member, at in sent:
            self._count(member, at)

    # -- inputs ---------------------------------------------------------------------
    def set_consent(self, member_id: int, given: bool) -> None:
        self._consent[member_id] = given

    def reply(self, member_id: int, text: str) -> bool:
        """An incoming SMS from the member; True when it revoked consent."""
        if is_stop_reply(text):
            self._consent[member_id] = False
            return True
        return False

    def submit(self, msg: Message, now: datetime) -> Release | None:
        """Queue a message; a transactional one is released at once (returned)."""
        if msg.id in self._pending:
            raise ValueError(f"message {msg.id} is already queued")
        if not msg.marketing:
            return Release(msg, now)
        self._pending[msg.id] = msg
        return None

    def cancel(self, message_id: str) -> bool:
        return self._pending.pop(message_id, None) is not None

    # -- outputs --------------------------------------------------------------------
    @property
    def pending(self) -> tuple[Message, ...]:
        return tuple(sorted(self._pending.values(), key=lambda m: (m.due_at, m.id)))

    def poll(self, now: datetime) -> list[Release | Dropped]:
        """What goes (or is dropped) at `now`, oldest due first."""
        out: list[Release | Dropped] = []
        for msg in self.pending:
            if msg.due_at > now:
                continue
            if not self._consent.get(msg.member_id, False):
                del self._pending[msg.id]
                out.append(Dropped(msg, now, "no marketing consent"))
            elif self._may_go(msg.member_id, now):
                del self._pending[msg.id]
                self._count(msg.member_id, now)
                out.append(Release(msg, now))
        return out

    def next_wakeup(self, now: datetime) -> datetime | None:
        """The earliest instant at which `poll` would release or drop something."""
        best: datetime | None = None
        for msg in self._pending.values():
            t = self._earliest(msg, max(msg.due_at, now))
            if t is not None and (best is None or t < best):
                best = t
        return best

    def schedule(self, now: datetime, horizon_days: int = 366) -> dict[str, datetime | None]:
        """When each queued message will go if nothing else changes (None: dropped, or
        not within the horizon): the panel's "goes at" column. Runs on a copy."""
        sim = copy.deepcopy(self)
        out: dict[str, datetime | None] = dict.fromkeys(self._pending)
        end = now + timedelta(days=horizon_days)
        t: datetime | None = now
        while t is not None and t <= end:
            for ev in sim.poll(t):
                out[ev.message.id] = ev.at if isinstance(ev, Release) else None
            t = sim.next_wakeup(t)
        return out

    # -- rules ----------------------------------------------------------------------
    def _may_go(self, member_id: int, when: datetime) -> bool:
        s = self.settings
        day = _day(when)
        if s.quiet(when):
            return False
        if self._member_day.get((member_id, day), 0) >= s.member_daily:
            return False
        return s.club_daily is None or self._club_day.get(day, 0) < s.club_daily

    def _earliest(self, msg: Message, start: datetime) -> datetime | None:
        if not self._consent.get(msg.member_id, False):
            return start  # poll drops it
        s = self.settings
        if s.club_daily == 0:
            return None
        t = s.open_from(start)
        # Each full day found is one recorded day, so this ends after at most as many
        # steps as there are days with sends recorded, plus one.
        for _ in range(len(self._club_day) + len(self._member_day) + 2):
            if self._may_go(msg.member_id, t):
                return t
            t = s.morning_after(_day(t))
        return None

    def _count(self, member_id: int, at: datetime) -> None:
        day = _day(at)
        self._member_day[(member_id, day)] = self._member_day.get((member_id, day), 0) + 1
        self._club_day[day] = self._club_day.get(day, 0) + 1
