"""Carrying out the agent's requests on the database: the one class the service uses.

`Handler.handle_batch` runs several requests in ONE transaction (group commit): each
request's idempotency key, its effects and its stored response commit together, so a
redelivered request or a second backend process on the same database gets the stored
answer and no second effect. Replies must be published only after the method returns.

The request types live in `backend.handling`, one module each, dispatched by `REQUESTS`.
On PostgreSQL several processes share the database: a request first takes its key's
advisory lock (a copy delivered to another process waits, then finds the stored answer),
and a member's money moves under the member's row lock. A request that still meets
another process's work (a unique key taken meanwhile, a deadlock) is rolled back to its
savepoint and carried out again after the batch commits, when it sees that work.

Every request is resolved through the registry (backend.registry, a cache read again when
the registry's generation moves): terminal and merchant id, then branch, then club, whose
members, program, offers and name it is carried out with. A terminal the registry does
not know, or a disabled one, gets 96 "terminal not registered", is counted among the
unknown terminals, and its answer is NOT stored: once the terminal is registered, the
agent's repeat of the same request is carried out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backend import engine, ledger, store, store_registry
from backend.engine import Connection
from backend.handling import advice, enroll, giftcard, inquiry, release, reversal
from backend.handling.context import Clock, Context, Outcome, release_lapsed
from backend.program import Offer, Program, RuleError
from backend.registry import Registry
from protocols.identity import IdentityError
from protocols.mqtt import Request, Response, SchemaError, refusal
from protocols.response_codes import ResponseCode

log = logging.getLogger(__name__)
__all__ = ["NOT_REGISTERED", "REQUESTS", "Clock", "Handler", "Outcome", "utc_now"]
#: the message of a request from a terminal the registry does not know or has disabled
NOT_REGISTERED = "terminal not registered"

#: request type -> its handler (protocols.mqtt.REQUEST_TYPES, each once)
REQUESTS: dict[str, Callable[[Context, Request, datetime], Outcome]] = {
    "enroll": enroll.handle,
    "inquiry": inquiry.handle,
    "advice": advice.handle,
    "reversal": reversal.handle,
    "release": release.handle,
}
#: reads a request type sends ahead with its key lock, for the whole group (`_look_ahead`)
LOOK_AHEAD: dict[str, Callable[[Context, Request], Callable[[], Any]]] = {
    "advice": advice.look_ahead,
}
#: reads a request type makes with its stored answer, in one statement, when nothing was
#: sent ahead for it (SQLite; a key seen twice in a group): (stored answer, its `ahead`)
WITH_ANSWER: dict[
    str, Callable[[Context, Request], tuple[store.StoredResponse | None, Callable[[], Any]]]
] = {
    "advice": advice.read_with_answer,
}
#: how many times a request that crossed another process's work is carried out again
RACE_RETRIES = 5


class _Redo(Exception):
    """A request of a SQLite group failed: the group again, in savepoints."""


@dataclass(frozen=True, slots=True)
class Ahead:
    """A request's key lock and stored answer, sent ahead for its group (`_look_ahead`)."""

    lock: str
    locked: Callable[[], bool]
    stored: Callable[[], store.StoredResponse | None]
    more: Callable[[], Any] | None = None  # what its type reads ahead (LOOK_AHEAD)


def _taken() -> bool:
    return True


def utc_now() -> datetime:
    return datetime.now(UTC)


class Handler:
    """Requests in, responses out, on one connection (one thread at a time)."""

    def __init__(
        self,
        conn: Connection,
        program: Program | None = None,
        *,
        offers: Sequence[Offer] = (),
        clock: Clock = utc_now,
        response_retention: timedelta = timedelta(days=30),
    ) -> None:
        self.conn = conn
        self.response_retention = response_retention
        # the configuration's program and offers: for the clubs with no program stored
        self.program = program or Program()
        self.config_offers = tuple(offers)
        self.clock = clock
        self.registry = Registry(self.program, self.config_offers)
        self.ctx = Context(conn, self.program, "", clock, registry=self.registry)
        self.races = 0  # requests carried out again after crossing another process
        self.unregistered = 0  # requests refused: terminal unknown or disabled

    # --- entry points ------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        return self.handle_batch([req])[0]

    def handle_batch(self, reqs: Sequence[Request]) -> list[Response]:
        """Carry out `reqs` in one transaction; one failing request does not undo others."""
        if engine.dialect_of(self.conn) == engine.SQLITE:
            done = self._sqlite_batch(reqs)
            if done is not None:
                return done
        out: list[Response | None] = [None] * len(reqs)
        todo = list(range(len(reqs)))
        crossed = [0] * len(reqs)  # times each request met another process's work
        while todo:
            again: list[int] = []
            # pipelined on PostgreSQL: a request's writes cost no round trip of their own
            with store.transaction(self.conn, pipeline=True):
                self.registry.refresh(self.conn)
                ahead = self._look_ahead([reqs[i] for i in todo])
                for n, i in enumerate(todo):
                    # only the first request of a transaction waits for locks (no deadlock)
                    with engine.nowait(self.conn, n > 0):
                        resp = self._in_savepoint(
                            reqs[i], last=crossed[i] >= RACE_RETRIES, ahead=ahead.get(n)
                        )
                    if resp is None:
                        again.append(i)
                    elif isinstance(resp, Response):
                        out[i] = resp
                    else:
                        crossed[i] += 1
                        again.append(i)
            self.races += len(again)
            todo = again
        return [r for r in out if r is not None]

    def _sqlite_batch(self, reqs: Sequence[Request]) -> list[Response] | None:
        """SQLite: the group without a savepoint per request, which costs two statements
        and a copy of every page the request changes that the group had changed before
        it. BEGIN IMMEDIATE holds the only write lock, so no other process's work can be
        met. Should a request fail, the whole group is rolled back (None) and carried out
        again request by request in savepoints, where the failure stays the request's own."""
        out: list[Response] = []
        try:
            with store.transaction(self.conn):
                self.registry.refresh(self.conn)
                for req in reqs:
                    try:
                        out.append(self._one(req))
                    except Exception as exc:
                        raise _Redo from exc
        except _Redo as redo:
            log.info("a group of %d requests again, one savepoint each: %r", len(reqs),
                     redo.__cause__)  # fmt: skip
            return None
        return out

    def _look_ahead(self, group: list[Request]) -> dict[int, Ahead]:
        """In a pipelined transaction: each request's key lock (the first one's waited
        for, the others' tried, as `_one` would) and its stored answer, for the whole
        group in one round trip. A key seen twice in the group is left to `_one`, which
        then finds the first one's answer."""
        if not engine.pipelined(self.conn):
            return {}
        ahead: dict[int, Ahead] = {}
        seen: set[str] = set()
        # a reversal changes the state of its advice: with one in the group, no advice's
        # state is read ahead
        states = not any(req.type == "reversal" for req in group)
        for n, req in enumerate(group):
            if req.key in seen or not req.key.startswith(f"{req.terminal_id}:"):
                continue
            seen.add(req.key)
            name = f"request:{req.key}"
            if n == 0:
                engine.exclusive(self.conn, name)
                locked: Callable[[], bool] = _taken
            else:
                locked = engine.try_exclusive_later(self.conn, name)
            stored = store.stored_response_later(self.conn, req.key)
            more = LOOK_AHEAD.get(req.type) if states else None
            ahead[n] = Ahead(name, locked, stored, more(self.ctx, req) if more else None)
        engine.flush(self.conn)
        return ahead

    def _in_savepoint(
        self, req: Request, *, last: bool, ahead: Ahead | None = None
    ) -> Response | bool | None:
        """One request in a savepoint: its response; None when a lock was busy (its turn
        comes in the next transaction); False when it crossed another process's work and
        must be carried out again."""
        engine.savepoint(self.conn, "request")
        try:
            resp: Response | bool | None = self._one(req, ahead)
            engine.flush(self.conn)  # the request's own errors are raised here, not later
        except Exception as exc:
            engine.rollback_to(self.conn, "request")
            if engine.is_busy(exc):
                resp = None
            elif engine.is_race(exc) and not last:
                log.info("request %s (%s) met another process's work: again", req.key, req.type)
                resp = False
            else:
                log.exception("request %s (%s) failed", req.key, req.type)
                resp = refusal(req, ResponseCode.MALFUNCTION, "internal error")
        engine.release(self.conn, "request")
        return resp

    def refresh_registry(self) -> bool:
        """Read the registry again if it changed (a program imported, a terminal disabled):
        the service calls this between batches too, so that an idle backend applies a new
        program version within its sweep interval; whether anything changed."""
        with store.transaction(self.conn):
            return self.registry.refresh(self.conn)

    def sweep(self) -> tuple[int, int]:
        """Release lapsed holds and expire old credit for everyone: (holds, rials expired).

        One process at a time (an advisory lock on PostgreSQL; another process's sweep
        running means this one has nothing to do)."""
        now = self.clock()
        with store.transaction(self.conn):
            if not engine.try_exclusive(self.conn, "sweep"):
                return 0, 0
            # a member whose row another process holds is left to the next sweep
            with engine.nowait(self.conn):
                holds = release_lapsed(self.ctx, None, now)
                expired = 0
                for m in ledger.members_with_expired_lots(self.conn, now):
                    engine.savepoint(self.conn, "expiry")
                    try:
                        store.member_by_id(self.conn, m, lock=True)
                        expired += ledger.expire(self.conn, m, now)
                    except Exception as exc:
                        engine.rollback_to(self.conn, "expiry")
                        if not engine.is_busy(exc):
                            raise
                    engine.release(self.conn, "expiry")
                giftcard.sweep(self.ctx, now)  # gift cards: a ledger of their own
        return holds, expired

    def prune_responses(self, *, batch: int = 500, max_batches: int = 20) -> int:
        """Delete stored responses older than the retention, `batch` rows per transaction
        (a short write lock each); how many were deleted."""
        before = self.clock() - self.response_retention
        total = 0
        for _ in range(max_batches):
            with store.transaction(self.conn):
                if not engine.try_exclusive(self.conn, "prune"):
                    break
                n = store.prune_responses(self.conn, before, limit=batch)
            total += n
            if n < batch:
                break
        return total

    # --- one request -------------------------------------------------------------------

    def _one(self, req: Request, ahead: Ahead | None = None) -> Response:
        if not req.key.startswith(f"{req.terminal_id}:"):
            return refusal(
                req, ResponseCode.FORMAT_ERROR, "idempotency key does not belong to this terminal"
            )
        terminal = self.registry.resolve(req.terminal_id, req.merchant_id)
        if terminal is None:
            # no effect, and no stored answer: a repeat after registration is carried out
            self.unregistered += 1
            store_registry.count_unknown(self.conn, req.terminal_id, req.merchant_id,
                                         self.clock())  # fmt: skip
            return refusal(req, ResponseCode.MALFUNCTION, NOT_REGISTERED)
        ctx = self.ctx
        ctx.club_id, ctx.branch_id = terminal.club_id, terminal.branch_id
        ctx.shop_name = self.registry.club(terminal.club_id).name
        ctx.program_version = self.registry.latest_version(terminal.club_id)
        ctx.program = self.registry.program(self.conn, terminal.club_id, ctx.program_version)
        ctx.offers = self.registry.offers(terminal.club_id, terminal.branch_id)
        # a copy of this request in another process: wait for it, then find its answer
        more = None
        if ahead is None:
            engine.exclusive(self.conn, f"request:{req.key}")
            with_answer = WITH_ANSWER.get(req.type)
            if with_answer is not None:
                stored, more = with_answer(self.ctx, req)
            else:
                stored = store.stored_response(self.conn, req.key)
        elif not ahead.locked():
            raise engine.LockBusy(ahead.lock)
        else:
            stored = ahead.stored()
        if stored is not None:
            if stored.type != req.type:
                why = "idempotency key reused for another request type"
                return refusal(req, ResponseCode.FORMAT_ERROR, why)
            return Response(
                type=req.type,
                id=req.id,
                key=req.key,
                code=stored.code,
                body=stored.body,
                message=stored.message,
            )
        now = self.clock()
        self.ctx.ahead = ahead.more if ahead is not None else more
        try:
            outcome = REQUESTS[req.type](self.ctx, req, now)
        except RuleError as exc:
            outcome = Outcome(exc.code, {}, exc.message)
        except IdentityError as exc:
            outcome = Outcome(exc.response_code, {}, str(exc))
        except SchemaError as exc:
            outcome = Outcome(ResponseCode.FORMAT_ERROR, {}, str(exc))
        finally:
            self.ctx.ahead = None
        code = str(outcome.code)
        store.store_response(
            self.conn,
            key=req.key,
            type=req.type,
            code=code,
            message=outcome.message,
            body=outcome.body,
            now=now,
        )
        return Response(
            type=req.type, id=req.id, key=req.key, code=code, body=outcome.body,
            message=outcome.message,
        )  # fmt: skip
