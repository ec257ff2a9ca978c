"""Server-side sessions in process memory, keyed by a random id carried in a signed cookie.

The cookie holds only `id.signature`; the user, the CSRF token and the idle clock stay
here, so logging out or expiring really ends the session. Time is passed in (seconds, any
monotonic origin) so idle expiry is tested without waiting. A panel restart logs everyone
out, which is acceptable for a shop's panel and keeps secrets off the disk.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

IDLE_TIMEOUT = 30 * 60.0
#: Bounds per kind, least recently used first out. Anonymous sessions (only the login
#: form's CSRF token) have their own, so a flood of GET /login never logs anyone out.
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Session:
    id: str
    csrf_token: str
    last_seen: float
    user: str | None = None
    data: dict[str, str] = field(default_factory=dict)


class SessionStore:
    def __init__(self, secret: bytes, *, idle_timeout: float = IDLE_TIMEOUT,
                 max_sessions: int = MAX_SESSIONS) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 bytes")
        self._secret = secret
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self._anonymous: OrderedDict[str, Session] = OrderedDict()
        self._users: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._anonymous) + len(self._users)

    def create(self, now: float, user: str | None = None) -> Session:
        """A new session; a user's is only ever made at login, so its id is always fresh."""
        table = self._anonymous if user is None else self._users
        while len(table) >= self.max_sessions:
            table.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = Session(id=sid, csrf_token=secrets.token_urlsafe(32), last_seen=now, user=user)
        table[sid] = session
        return session

    def get(self, sid: str, now: float) -> Session | None:
        """The live session of this id, its idle clock restarted; None if unknown or idle."""
        for table in (self._users, self._anonymous):
            session = table.get(sid)
            if session is None:
                continue
            if now - session.last_seen >= self.idle_timeout:
                del table[sid]
                return None
            session.last_seen = now
            table.move_to_end(sid)
            return session
        return None

    def drop(self, sid: str) -> None:
        self._anonymous.pop(sid, None)
        self._users.pop(sid, None)

    def cookie_value(self, session: Session) -> str:
        return f"{session.id}.{self._sign(session.id)}"

    def from_cookie(self, value: str | None, now: float) -> Session | None:
        if not value or value.count(".") != 1:
            return None
        sid, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign(sid)):
            return None
        return self.get(sid, now)

    def _sign(self, sid: str) -> str:
        return hmac.new(self._secret, sid.encode(), hashlib.sha256).hexdigest()


def csrf_valid(session: Session | None, token: str | None) -> bool:
    """The form's token is this session's, compared in constant time."""
    return (session is not None and isinstance(token, str) and bool(token)
            and hmac.compare_digest(token.encode(), session.csrf_token.encode()))
