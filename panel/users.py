"""The port through which the panel reads its users: `UserDirectory`.

`DatabaseUserDirectory` implements it over the backend's `panel_users` table (managed with
`loyalty-backend user add|list|disable|passwd` and the panel's users page);
`InMemoryUserDirectory` is for tests of the parts that need no database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from backend import store, store_users
from panel.database import Database
from panel.passwords import hash_password
from panel.roles import Role


@dataclass(frozen=True, slots=True)
class PanelUser:
    name: str
    role: Role
    password_hash: str
    #: The club an owner or staff member belongs to; None for a provider (every club).
    club: str | None = None
    disabled: bool = False
    last_login: datetime | None = None
    club_id: int | None = None


class UserDirectory(Protocol):
    """What the panel needs of the users' store; the store layer implements it."""

    def find_user(self, name: str) -> PanelUser | None:
        """The user of this name (exact match), disabled ones included; None if none."""
        ...

    def record_login(self, name: str, when: datetime, address: str) -> None:
        """Note a successful login (for `user list` and the audit log)."""
        ...


class InMemoryUserDirectory:
    """A `UserDirectory` in a dict: for tests and the browser harness, never for a shop."""

    def __init__(self) -> None:
        self._users: dict[str, PanelUser] = {}
        self.logins: list[tuple[str, datetime, str]] = []

    def add(self, name: str, password: str, role: Role, club: str | None = None) -> PanelUser:
        if name in self._users:
            raise ValueError(f"user {name!r} exists")
        if (role is Role.PROVIDER) != (club is None):
            raise ValueError("a provider has no club; an owner or staff member has one")
        user = PanelUser(name=name, role=role, password_hash=hash_password(password), club=club)
        self._users[name] = user
        return user

    def disable(self, name: str) -> None:
        self._users[name] = replace(self._users[name], disabled=True)

    def find_user(self, name: str) -> PanelUser | None:
        return self._users.get(name)

    def record_login(self, name: str, when: datetime, address: str) -> None:
        self._users[name] = replace(self._users[name], last_login=when)
        self.logins.append((name, when, address))


def panel_user(account: store_users.UserAccount) -> PanelUser:
    return PanelUser(name=account.name, role=Role(account.role),
                     password_hash=account.password_hash, club=account.club,
                     disabled=account.disabled, last_login=account.last_login,
                     club_id=account.club_id)


class DatabaseUserDirectory:
    """The users of the backend's database (`loyalty-backend user add`), read at every
    request, so a user disabled on the command line is out at once."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def find_user(self, name: str) -> PanelUser | None:
        with self.database.connection() as conn:
            account = store_users.find_user(conn, name)
        return panel_user(account) if account is not None else None

    def record_login(self, name: str, when: datetime, address: str) -> None:
        with self.database.connection() as conn, store.transaction(conn):
            store_users.record_login(conn, name, when, address)
