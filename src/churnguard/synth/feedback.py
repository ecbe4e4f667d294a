"""NPS surveys (quarterly) and CSAT answers after tickets, with optional comments."""

from __future__ import annotations

import numpy as np

from churnguard.synth.sampling import sigmoid
from churnguard.synth.state import Risk
from churnguard.synth.timeline import DAY, NAT, Array, Calendar, Chunk
from churnguard.synth.vocabulary import COMMENTS, CSAT_COMMENTS, NPS_COMMENTS

NPS_MEAN, NPS_SLOPE, NPS_SD, NPS_RESPONSE, NPS_RESPONSE_SLOPE = 7.3, 1.6, 1.1, 0.1, 0.6
CSAT_SHARE = 0.3
COMMENT_SHARE = 0.45


def draw_nps(r: Risk, t: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """Who answers this month's NPS survey (asked quarterly) and their score."""
    asked = np.flatnonzero((t - r.phase) % 3 == 0)
    s = r.s[asked]
    idx = asked[rng.random(len(asked)) < sigmoid(NPS_RESPONSE + NPS_RESPONSE_SLOPE * s)]
    answered = np.zeros(len(r.s), dtype=bool)
    answered[idx] = True
    score = np.full(len(r.s), np.nan)
    raw = NPS_MEAN + NPS_SLOPE * r.s[idx] + NPS_SD * rng.standard_normal(len(idx))
    score[idx] = np.clip(np.round(raw), 0, 10)
    return answered, score


def survey_chunk(
    client: Array, when: Array, survey: int, score: Array, rng: np.random.Generator
) -> Chunk:
    """Feedback rows; some carry a comment (detractors complain, promoters praise)."""
    return {
        "client": client,
        "at": when,
        "survey": np.full(len(client), survey),
        "score": score,
        "comment": _draw_comment(survey, score, rng),
    }


def _draw_comment(survey: int, score: Array, rng: np.random.Generator) -> Array:
    """Index into COMMENTS matching the score band, or -1 for no comment."""
    pools = NPS_COMMENTS if survey == 0 else CSAT_COMMENTS
    band = np.searchsorted((6.5, 8.5) if survey == 0 else (2.5, 3.5), score)
    sizes = np.asarray([len(p) for p in pools])
    first = len(COMMENTS) - sum(len(p) for p in CSAT_COMMENTS) if survey else 0
    offsets = first + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pick = offsets[band] + (rng.random(len(score)) * sizes[band]).astype(np.int64)
    return np.where(rng.random(len(score)) < COMMENT_SHARE, pick, -1)


def write_csat(
    r: Risk,
    client: Array,
    resolved: Array,
    slow: Array,
    cal: Calendar,
    rng: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> None:
    """CSAT answers after some resolved tickets."""
    at = resolved + rng.integers(1800, 2 * DAY, len(client))
    keep = (resolved != NAT) & (at < cal.end * DAY) & (rng.random(len(client)) < CSAT_SHARE)
    c = client[keep]
    raw = 4.3 + 0.7 * r.s[c] - 0.6 * slow[keep] + 0.7 * rng.standard_normal(len(c))
    log["feedback"].append(survey_chunk(c, at[keep], 1, np.clip(np.round(raw), 1, 5), rng))
