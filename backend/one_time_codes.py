"""One-time codes by SMS: the till's large redemption and the member page's credit transfer.

One rule for every purpose (store.OTP_TILL, OTP_LINK, OTP_TRANSFER): a code of the
program's `otp_digits` random digits, stored only as SHA-256(salt:code), valid for
`otp_seconds` and `otp_tries` wrong answers; a new code of a purpose voids the earlier one
of that purpose (and never another purpose's). The caller sends the code by SMS
(`texts.otp_sms` or `texts.transfer_otp_sms`, the code last in the text) and keeps the
attempt's row change even when the check refuses (a wrong try must count).
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


class CodeRefused(ValueError):
    """The code opens nothing; `reason` is "none", "expired" or "wrong" (a try counted)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def otp_hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def new_code(digits: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def issue(conn: Connection, member_id: int, program: Program, now: datetime, *,
          purpose: str) -> tuple[int, str]:
    """A fresh code for the member and purpose, stored hashed: (its otp id, the code)."""
    code = new_code(program.otp_digits)
    salt = secrets.token_hex(8)
    otp_id = store.new_otp(conn, member_id, salt=salt, digest=otp_hash(salt, code), now=now,
                           seconds=program.otp_seconds, tries=program.otp_tries,
                           purpose=purpose)
    return otp_id, code


def check(conn: Connection, member_id: int, code: str, now: datetime, *, purpose: str,
          otp_id: int | None = None) -> None:
    """Use up the member's open code of `purpose` if `code` is it; else CodeRefused, with
    the try counted (the last wrong try, or an expired code, closes it). `otp_id`: only
    that code will do (a transfer's own, not a later one asked for another transfer)."""
    otp = store.open_otp(conn, member_id, purpose)
    if otp is None or (otp_id is not None and otp.id != otp_id):
        raise CodeRefused("none", "no one-time code is open for this member")
    if otp.expires_at <= ts(now) or otp.tries_left <= 0:
        store.set_otp(conn, otp.id, tries_left=otp.tries_left, used=True)
        raise CodeRefused("expired", "the one-time code has expired")
    if not hmac.compare_digest(otp_hash(otp.salt, ascii_digits(code.strip())), otp.hash):
        left = otp.tries_left - 1
        store.set_otp(conn, otp.id, tries_left=left, used=left <= 0)
        raise CodeRefused("wrong", "wrong one-time code")
    store.set_otp(conn, otp.id, tries_left=otp.tries_left, used=True)
