"""Surveys after a purchase (backend.surveys) and the link guess limiter."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from backend.member_tokens import GuessLimiter
from backend.surveys import (
    Answer,
    SurveyError,
    averages,
    parse_answer,
    should_survey,
    week_of,
)

SEED = b"s" * 32
TODAY = date(2026, 12, 1)


def test_share_and_once_a_month() -> None:
    asked = sum(should_survey(SEED, f"p{i}", 0.2, None, TODAY) for i in range(10_000))
    assert 1800 < asked < 2200
    assert should_survey(SEED, "p1", 0.2, None, TODAY) == should_survey(SEED, "p1", 0.2,
                                                                        None, TODAY)
    assert not any(should_survey(SEED, f"p{i}", 1.0, TODAY - timedelta(days=29), TODAY)
                   for i in range(100))
    assert should_survey(SEED, "p1", 1.0, TODAY - timedelta(days=30), TODAY)
    assert not should_survey(SEED, "p1", 0.0, None, TODAY)
    with pytest.raises(ValueError):
        should_survey(SEED, "p", 1.5, None, TODAY)


def test_answers_and_figures() -> None:
    assert parse_answer("۴", "  خوب بود\x07 ") == (4, "خوب بود")
    for bad in ("0", "6", "", "x", "4.5"):
        with pytest.raises(SurveyError):
            parse_answer(bad)
    with pytest.raises(SurveyError):
        parse_answer("3", "ا" * 501)
    assert week_of(date(2026, 12, 5)) == date(2026, 12, 5)  # a Saturday
    assert week_of(date(2026, 12, 4)) == date(2026, 11, 28)  # Friday: the week's last day
    answers = [Answer(1, date(2026, 12, 5), 5, "", "A"), Answer(2, date(2026, 12, 6), 2, "",
                                                               "A"),
               Answer(3, date(2026, 12, 4), 4, "", "B")]
    assert averages(answers, lambda a: a.branch) == {"A": (2, 3.5), "B": (1, 4.0)}
    assert averages(answers, lambda a: week_of(a.on))[date(2026, 12, 5)] == (2, 3.5)
    assert [a.purchase_id for a in answers if a.low] == [2]


def test_guess_limiter_window() -> None:
    g = GuessLimiter(failures=3, window=60)
    for t in range(3):
        assert g.allowed("1.2.3.4", t)
        g.failed("1.2.3.4", t)
    assert not g.allowed("1.2.3.4", 10) and g.allowed("5.6.7.8", 10)
    assert g.allowed("1.2.3.4", 61)
