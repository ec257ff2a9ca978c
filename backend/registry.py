"""The registry as a running backend sees it: terminals, clubs, programs and offers held in
memory, read again only when the database's registry generation has moved.

Why a cache: every request is resolved terminal -> branch -> club, and the request path
must stay cheap (the fleet benchmark's goal: under 5 % of the backend's CPU per request
with 200 clubs). One read of the one-row generation per batch tells whether anything
changed (a terminal added or disabled, a program imported, an offer added or ended), in
this process or another; then everything is loaded again in a few statements.

A club with no program stored uses the configuration's (version 0), and the
configuration's offers with it: a one-shop database migrated from before clubs keeps
running exactly as its TOML says.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field

from backend import store, store_registry
from backend.engine import Connection
from backend.program import Offer, Program
from backend.store_registry import Club, Terminal

log = logging.getLogger(__name__)
#: the program version of a club that has none stored: the configuration's
CONFIG_VERSION = 0


def parse_program(body: str) -> Program:
    """A stored program's TOML as a Program (ConfigError when it is not one)."""
    from backend.config import parse_program as parse

    return parse(tomllib.loads(body))


@dataclass
class Registry:
    """The cache; `refresh(conn)` once per transaction before `resolve`."""

    default_program: Program = field(default_factory=Program)
    config_offers: Sequence[Offer] = ()
    generation: int = -1
    terminals: dict[str, Terminal] = field(default_factory=dict)
    clubs: dict[int, Club] = field(default_factory=dict)
    #: club id -> its newest program version (absent: CONFIG_VERSION)
    versions: dict[int, int] = field(default_factory=dict)
    _programs: dict[tuple[int, int], Program] = field(default_factory=dict)
    _offers: dict[int, list[Offer]] = field(default_factory=dict)
    _branch_offers: dict[tuple[int, int], list[Offer]] = field(default_factory=dict)

    def refresh(self, conn: Connection) -> bool:
        """Load everything again if the registry changed since the last look; whether it had."""
        gen = store_registry.generation(conn)
        if gen == self.generation:
            return False
        self.terminals = {t.id: t for t in store_registry.list_terminals(conn)}
        self.clubs = {c.id: c for c in store_registry.list_clubs(conn)}
        versions = store_registry.latest_program_versions(conn)
        for club_id, version in versions.items():
            if self.versions.get(club_id) != version and self.generation != -1:
                log.info("club %s: program version %d applied", club_id, version)
        self.versions = versions
        offers: dict[int, list[Offer]] = {}
        for o in store.offers(conn, club_id=None):
            offers.setdefault(o.club_id or 0, []).append(o)
        self._offers = offers
        self._branch_offers = {}
        self.generation = gen
        return True

    def resolve(self, terminal_id: str, merchant_id: str) -> Terminal | None:
        """The enabled terminal of the request, or None (unknown, disabled, other merchant)."""
        t = self.terminals.get(terminal_id)
        if t is None or not t.enabled or not store_registry.merchant_matches(t, merchant_id):
            return None
        return t

    def club(self, club_id: int) -> Club:
        return self.clubs[club_id]

    def latest_version(self, club_id: int) -> int:
        return self.versions.get(club_id, CONFIG_VERSION)

    def program(self, conn: Connection, club_id: int, version: int | None) -> Program:
        """The club's program at `version` (None or 0: the configuration's); versions are
        never changed once stored, so each is parsed once."""
        if not version:
            return self.default_program
        found = self._programs.get((club_id, version))
        if found is None:
            stored = store_registry.program_version(conn, club_id, version)
            if stored is None:
                log.error("club %s has no program version %s: the configuration's", club_id,
                          version)  # fmt: skip
                return self.default_program
            found = self._programs[(club_id, version)] = parse_program(stored.body)
        return found

    def offers(self, club_id: int, branch_id: int) -> list[Offer]:
        """The offers of a purchase in this branch: the club's own that run there, and the
        configuration's when the club uses the configuration's program."""
        key = (club_id, branch_id)
        found = self._branch_offers.get(key)
        if found is None:
            own = [o for o in self._offers.get(club_id, ()) if o.runs_in(branch_id)]
            cfg = list(self.config_offers) if self.latest_version(club_id) == 0 else []
            found = self._branch_offers[key] = [*cfg, *own]
        return found
