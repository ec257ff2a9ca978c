"""After-purchase surveys, pure: who is asked, what an answer may be, the panel's figures.

A configurable share of purchases is asked, chosen by HMAC-SHA256(club seed, purchase
key) so the SMS worker and a restart agree without a stored coin toss, and a member is
asked at most once in any 30 days (rolling, so no two surveys fall either side of a
month's end). The answer is one rating 1-5 and an optional comment; one per purchase
(the survey token is bound to it, backend.member_tokens).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from protocols.persian import ascii_digits

DEFAULT_SHARE = 0.2
MIN_GAP_DAYS = 30
MAX_COMMENT = 500
LOW_RATING = 2  # at or below: shown to the owner the same day


class SurveyError(ValueError):
    """An answer the form refuses (the page shows the message)."""


def should_survey(seed: bytes, purchase_key: str, share: float, last_survey_on: date | None,
                  today: date) -> bool:
    if not 0.0 <= share <= 1.0:
        raise ValueError("the survey share is between 0 and 1")
    if last_survey_on is not None and (today - last_survey_on).days < MIN_GAP_DAYS:
        return False
    mac = hmac.new(seed, purchase_key.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") < share * 2**64


@dataclass(frozen=True, slots=True)
class Answer:
    purchase_id: int
    on: date  # Tehran date of the answer
    rating: int
    comment: str
    branch: str = ""
    terminal: str = ""

    @property
    def low(self) -> bool:
        return self.rating <= LOW_RATING


def parse_answer(rating: str, comment: str = "") -> tuple[int, str]:
    """The form's fields: a rating typed or tapped in any digits, a comment cleaned of
    control characters and cut to MAX_COMMENT."""
    r = ascii_digits(rating.strip())
    if r not in {"1", "2", "3", "4", "5"}:
        raise SurveyError("امتیاز باید از ۱ تا ۵ باشد")
    text = "".join(c for c in comment if c.isprintable() or c in " \n").strip()
    if len(text) > MAX_COMMENT:
        raise SurveyError(f"توضیح حداکثر {MAX_COMMENT} نویسه است")
    return int(r), text


def week_of(day: date) -> date:
    """The Saturday starting `day`'s week: the Iranian week."""
    return day - timedelta(days=(day.weekday() - 5) % 7)


def averages(answers: Iterable[Answer], key: Callable[[Answer], Hashable]
             ) -> dict[Hashable, tuple[int, float]]:
    """(answers, mean rating) per key: week_of(a.on), a.branch or a.terminal."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for a in answers:
        groups[key(a)].append(a.rating)
    return {k: (len(v), sum(v) / len(v)) for k, v in sorted(groups.items(), key=lambda i:
                                                               str(i[0]))}
