"""One-time codes, the same everywhere: the till's, a fresh member link's, a transfer's.

A code is `digits` random decimal digits, kept as SHA-256(salt:code), valid `seconds`
and `tries` attempts (the program's otp_* numbers: 120 s and 3 tries by default); a code
of one purpose (store.OTP_*) never opens or voids one of another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from backend import store
from backend.engine import Connection
from backend.program import Program
from backend.store import ts
from protocols.persian import ascii_digits

#: why a code did not open, for the log and the till's messages
NONE_OPEN, EXPIRED, WRONG = ("no one-time code is open for this member",
                             "the one-time code has expired", "wrong one-time code")


def otp_hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def new_code(digits: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def issue(conn: Connection, member_id: int, program: Program, now: datetime,
          purpose: str = store.OTP_TILL) -> tuple[int, str]:
    """A new code for the member and purpose: (its id, the code to send). Every earlier
    open code of the purpose is void."""
    code = new_code(program.otp_digits)
    salt = secrets.token_hex(8)
    otp_id = store.new_otp(conn, member_id, salt=salt, digest=otp_hash(salt, code), now=now,
                           seconds=program.otp_seconds, tries=program.otp_tries,
                           purpose=purpose)
    return otp_id, code


def check(conn: Connection, member_id: int, code: str, now: datetime,
          purpose: str = store.OTP_TILL, *, otp_id: int | None = None) -> str | None:
    """None when `code` opens the member's open code of `purpose` (used up by that);
    else why not (a wrong code costs a try; the last try, or an expired code, voids it).
    `otp_id`: only that code will do (a transfer's own, not one asked for a later one).
    Persian digits typed on a phone count as the ASCII ones."""
    otp = store.open_otp(conn, member_id, purpose)
    if otp is None or (otp_id is not None and otp.id != otp_id):
        return NONE_OPEN
    if otp.expires_at <= ts(now) or otp.tries_left <= 0:
        store.set_otp(conn, otp.id, tries_left=otp.tries_left, used=True)
        return EXPIRED
    if not hmac.compare_digest(otp_hash(otp.salt, ascii_digits(code.strip())), otp.hash):
        left = otp.tries_left - 1
        store.set_otp(conn, otp.id, tries_left=left, used=left <= 0)
        return WRONG
    store.set_otp(conn, otp.id, tries_left=otp.tries_left, used=True)
    return None
