"""release: the agent gave up an inquiry (docs/mqtt.md): end its hold, or, if the inquiry
has not been carried out yet, answer it now so that it never holds."""

from __future__ import annotations

from datetime import datetime

from backend import engine, store
from backend.handling.context import Context, Outcome
from backend.handling.reversal import end_quote
from backend.program import RuleError
from protocols.mqtt import Request
from protocols.response_codes import ResponseCode


def handle(ctx: Context, req: Request, now: datetime) -> Outcome:
    conn = ctx.conn
    inquiry_key = req.body["inquiry_key"]
    if not inquiry_key.startswith(f"{req.terminal_id}:0100:"):
        raise RuleError(
            ResponseCode.INVALID_TRANSACTION, "inquiry_key is not an inquiry of this terminal"
        )
    # the inquiry may be under way in another process: wait for it (its key's lock)
    engine.exclusive(conn, f"request:{inquiry_key}")
    stored = store.stored_response(conn, inquiry_key)
    if stored is None:
        store.store_response(
            conn,
            key=inquiry_key,
            type="inquiry",
            code=ResponseCode.INVALID_TRANSACTION,
            message="inquiry released by the agent before it was carried out",
            body={},
            now=now,
        )
        return Outcome(ResponseCode.APPROVED, {"released": 0})
    # Only the quote that inquiry itself made: the body's quote_id is the agent's note,
    # never trusted to name another inquiry's quote.
    quote_id = stored.body.get("quote_id")
    released = 0
    if quote_id:
        released = end_quote(ctx, quote_id, req.terminal_id, store.RELEASED, now)
    return Outcome(ResponseCode.APPROVED, {"released": released})
