"""The request types, one module each (`enroll`, `inquiry`, `advice`, `reversal`,
`release`), each a `handle(ctx, req, now) -> Outcome`; `backend.handlers` dispatches to
them by a table. They hold no SQL: they call the store layer (`backend.store`,
`backend.ledger`, `backend.sms.outbox`) and the pure rules (`backend.program`,
`backend.ledger_rules`)."""
