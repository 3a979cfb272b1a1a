"""Sentiment of feedback comments and conversation messages: VADER, offline.

VADER (``vaderSentiment``) is a lexicon and rules tuned on social-media text: it installs from PyPI
with its lexicon inside, needs no model download or network, and scores a short message in well under
a millisecond. ``score`` returns its compound score in [-1, 1]; by VADER's own convention ≥ 0.05 is
positive and ≤ -0.05 negative.
"""

from __future__ import annotations

from functools import cache
from typing import Any

NEGATIVE = -0.05
POSITIVE = 0.05


@cache
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def score(text: str) -> float:
    return float(_analyzer().polarity_scores(text or "")["compound"])


def label(compound: float) -> str:
    return "positive" if compound >= POSITIVE else "negative" if compound <= NEGATIVE else "neutral"
