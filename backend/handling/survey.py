"""The survey link line of a purchase SMS (issue 16), kept apart from the SMS's composition."""

from __future__ import annotations

from datetime import datetime

from backend import member_tokens, store_surveys, texts
from backend.handling.context import Context
from backend.store import Member


def survey_line(ctx: Context, member: Member, purchase_key: str, terminal_id: str,
                now: datetime) -> str | None:
    """The line asking for a rating, or None (not sampled, surveys off, no public address).
    Runs in the advice's transaction with the member locked."""
    share = ctx.program.survey_percent / 100
    if share <= 0:
        return None
    club = ctx.registry.clubs.get(ctx.club_id)  # the registry's copy: no query per advice
    if club is None or not club.public_url:
        return None
    token = store_surveys.ask(ctx.conn, club_id=ctx.club_id, member_id=member.id,
                              purchase_key=purchase_key, branch_id=ctx.branch_id,
                              terminal_id=terminal_id, share=share, now=now)
    if token is None:
        return None
    return texts.survey_line(member_tokens.link(club.public_url, member_tokens.SURVEY, token))
