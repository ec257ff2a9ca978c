"""Links to the member's own page and to a survey: random tokens, stored hashed, pure.

A token is 16 random bytes (128 bits) written base64url without padding (22 characters),
so the path `/m/<token>` is 25 characters and a link with the club's short address stays
near 30. The store keeps only SHA-256(token): a leaked table opens nothing. A slow hash
(argon2, bcrypt) protects low-entropy secrets (passwords) against guessing; against 2^128
possibilities guessing is hopeless at any hash speed, while a slow or salted hash would
cost every page view CPU time and prevent looking the token up by an index. Each token is
bound to its purpose, member and club (and a survey token to one purchase), expires
(30 days by default), and can be revoked.

Credit transfer arithmetic lives here too, as it is the member page's one money form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

TOKEN_BYTES = 16
PAGE, SURVEY = "m", "s"  # path prefixes: /m/<token>, /s/<token>
PURPOSES = (PAGE, SURVEY)
DEFAULT_DAYS = {PAGE: 30, SURVEY: 7}
_PATH = re.compile(r"/([ms])/([A-Za-z0-9_-]{22})")


class TokenError(ValueError):
    """A link that opens nothing; `reason` is for the log, the page says only "invalid"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_token(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    raw = random_bytes(TOKEN_BYTES)
    if len(raw) != TOKEN_BYTES:
        raise ValueError("the token source gave the wrong number of bytes")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def link_path(purpose: str, token: str) -> str:
    return f"/{purpose}/{token}"


MAX_PUBLIC_URL = 40  # + the 25-character path: a link of at most ~65 characters in the SMS
_PUBLIC_URL = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*")


def public_url(text: str) -> str:
    """A club's public address as the links will start: scheme and host, maybe a path,
    no trailing slash, short, nothing a phone's SMS app would cut a link at."""
    url = text.strip().rstrip("/")
    if not _PUBLIC_URL.fullmatch(url):
        raise ValueError(f"not a public address like https://club.example.ir: {text!r}")
    if len(url) > MAX_PUBLIC_URL:
        raise ValueError(f"the public address has {len(url)} characters; at most "
                         f"{MAX_PUBLIC_URL}, so the SMS stays short")
    return url


def link(base: str, purpose: str, token: str) -> str:
    """The link an SMS carries: the club's public address and the token's path."""
    return base + link_path(purpose, token)


def parse_path(path: str) -> tuple[str, str]:
    """(purpose, token) of a link path; anything else is refused before any lookup."""
    m = _PATH.fullmatch(path)
    if m is None:
        raise TokenError("malformed link")
    return m.group(1), m.group(2)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_hash: str
    purpose: str
    member_id: int
    club_id: int
    expires_at: datetime
    purchase_id: int | None = None
    revoked_at: datetime | None = None


def issue(purpose: str, member_id: int, club_id: int, now: datetime, *,
          days: int | None = None, purchase_id: int | None = None,
          random_bytes: Callable[[int], bytes] = secrets.token_bytes
          ) -> tuple[str, TokenRecord]:
    """A fresh token (goes in the SMS, never stored) and its record (stored)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    if (purpose == SURVEY) != (purchase_id is not None):
        raise ValueError("a survey token is bound to one purchase, a page token to none")
    d = DEFAULT_DAYS[purpose] if days is None else days
    if d < 1:
        raise ValueError("a token is valid for at least one day")
    token = new_token(random_bytes)
    return token, TokenRecord(hash_token(token), purpose, member_id, club_id,
                              now + timedelta(days=d), purchase_id)


def revoke(record: TokenRecord, now: datetime) -> TokenRecord:
    return record if record.revoked_at else replace(record, revoked_at=now)


def check(record: TokenRecord | None, path: str, club_id: int, now: datetime) -> TokenRecord:
    """The record a link opens, or TokenError. `record` is what the store found by
    hash_token(token) (None: nothing); every binding is checked again here."""
    purpose, token = parse_path(path)
    if record is None or not hmac.compare_digest(record.token_hash, hash_token(token)):
        raise TokenError("unknown token")
    if record.purpose != purpose:
        raise TokenError("token used for another purpose")
    if record.club_id != club_id:
        raise TokenError("token of another club")
    if record.revoked_at is not None and record.revoked_at <= now:
        raise TokenError("token revoked")
    if now >= record.expires_at:
        raise TokenError("token expired")
    return record


# --- credit transfer -----------------------------------------------------------------


class TransferError(ValueError):
    """A transfer the program refuses. `reason` names the rule for the member's page,
    which words it in Persian (the message is for logs and the operator): key, self,
    minimum, per_transfer, per_day, balance, or the service's off, phone, club, closed."""

    def __init__(self, message: str, reason: str = "rule") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TransferLimits:
    per_transfer: int = 5_000_000
    per_day: int = 10_000_000
    minimum: int = 10_000


@dataclass(frozen=True, slots=True)
class TransferPlan:
    amount: int
    out_key: str  # the sender's ledger row (kind transfer_out)
    in_key: str  # the receiver's ledger row (kind transfer_in)


def free_balance(balance: int, held: int) -> int:
    """What a member may give away: the balance less what open holds keep for the till."""
    return max(0, balance - held)


def plan_transfer(key: str, sender: int, receiver: int, amount: int, balance: int,
                  held: int, sent_today: int, limits: TransferLimits = TransferLimits()
                  ) -> TransferPlan:
    """Check a transfer and name its two ledger rows. Both derive from one idempotency
    key, written in one transaction: either both rows exist or neither, and a retry of
    the same key finds them and changes nothing. `sent_today` is what the sender already
    transferred this Tehran day."""
    if not key or len(key) > 64:
        raise TransferError("a transfer needs an idempotency key (1..64 characters)", "key")
    if sender == receiver:
        raise TransferError("credit cannot be transferred to oneself", "self")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < limits.minimum:
        raise TransferError(f"the amount is at least {limits.minimum} rials", "minimum")
    if amount > limits.per_transfer:
        raise TransferError(f"at most {limits.per_transfer} rials per transfer", "per_transfer")
    if sent_today + amount > limits.per_day:
        raise TransferError(f"at most {limits.per_day} rials a day; "
                            f"{max(0, limits.per_day - sent_today)} left today", "per_day")
    if amount > free_balance(balance, held):
        raise TransferError("the amount is more than the free balance (held credit counts)",
                            "balance")
    return TransferPlan(amount, f"transfer:{key}:out", f"transfer:{key}:in")


def received_lots(taken: list[tuple[int, int]], expiry_of: dict[int, datetime]
                  ) -> list[tuple[int, datetime]]:
    """The receiver's new lots: (amount, expiry) with the expiry of the sender's lots they
    came from (FIFO, ledger_rules.fifo_take), so a transfer never lengthens credit's life."""
    merged: dict[datetime, int] = {}
    for lot_id, part in taken:
        merged[expiry_of[lot_id]] = merged.get(expiry_of[lot_id], 0) + part
    return [(amount, exp) for exp, amount in sorted(merged.items())]


class GuessLimiter:
    """At most `failures` bad links per client (address) in `window` seconds, fed time.

    Tokens are unguessable anyway; this keeps a scanner from costing lookups and log
    lines, and makes a probing client visible."""

    def __init__(self, failures: int = 10, window: float = 600.0) -> None:
        if failures < 1 or window <= 0:
            raise ValueError("failures >= 1 and window > 0")
        self.failures, self.window = failures, window
        self._seen: dict[str, list[float]] = {}

    def allowed(self, client: str, now: float) -> bool:
        recent = [t for t in self._seen.get(client, []) if now - t < self.window]
        if recent:
            self._seen[client] = recent
        else:
            self._seen.pop(client, None)
        return len(recent) < self.failures

    def failed(self, client: str, now: float) -> None:
        self._seen.setdefault(client, []).append(now)
