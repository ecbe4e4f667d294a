"""Drivers and reasons: what a churn score says about why, in plain words.

A model hands over per-feature contributions to a client's risk (log-odds: LightGBM's
``pred_contrib`` or a logistic model's coefficient x standardised value). Only contributions that
raise risk are reasons to act; the largest become the score's drivers, each stated in plain words
by its feature's reason template (the feature catalog). ``playbook.py`` turns drivers into actions.

Missing values: a driver whose value is missing is skipped, unless the missingness is itself the
signal. That is read from the reason template: "No contact for {value} days" with no value means
no contact on record, so the driver stays and says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pandas as pd

from churnguard.features.catalog import Feature, FeatureSet

Value = float | str | None

_BATCH_ROWS = 50_000  # rows per block in top_drivers_batch: bounds the temporary arrays

# "No contact for {value:.0f} days" / "We have not reached out for {value:.0f} days"
_NO_EVENT = re.compile(r"^No (?P<what>.+) for \{value[^}]*\} days$")
_NOT_EVENT = re.compile(r"^(?P<who>.+?) (?:has|have) not (?P<what>.+) for \{value[^}]*\} days$")


# ---------------------------------------------------------------------------------------------
# Reasons


# Plural nouns of the reason templates, and their singular: "1 invoice overdue", "in 1 day".
_SINGULAR = {
    "days": "day",
    "times": "time",
    "contacts": "contact",
    "meetings": "meeting",
    "calls": "call",
    "emails": "email",
    "reviews": "review",
    "responses": "response",
    "invoices": "invoice",
    "tickets": "ticket",
    "contracts": "contract",
    "lines": "line",
}
_PLACEHOLDER = re.compile(r"\{value(?::(?P<spec>[^}]*))?\}")


def _singular(template: str) -> str:
    """The template for a count of one: the first plural noun after the value made singular."""
    placeholder = _PLACEHOLDER.search(template)
    if placeholder is None:
        return template
    head, tail = template[: placeholder.end()], template[placeholder.end() :]
    words = tail.split(" ")
    for i, word in enumerate(words):
        if word in _SINGULAR:
            words[i] = _SINGULAR[word]
            break
    return head + " ".join(words)


@dataclass(frozen=True)
class _Wording:
    """How a feature's value is said: its template, and what to say when the value is missing."""

    feature: Feature
    missing: str  # the reason for a missing value
    missing_is_signal: bool  # a missing value is itself a reason (the event never happened)

    def say(self, value: object) -> str:
        """The reason for a value that is not missing."""
        f = self.feature
        if "{value" not in f.reason:
            return _say_flag(f, value) if f.reason else f"{f.description}: {_plain(value)}"
        value = value + 0.0 if type(value) is float else value  # no -0
        try:
            return self._template(value).format(value=value)
        except (ValueError, TypeError):  # e.g. text where the template wants a number
            return f"{f.description}: {_plain(value)}"

    def _template(self, value: object) -> str:
        """The template as it reads for this value: singular when the value shows as 1."""
        spec, singular = self._count_form
        return singular if format(value, spec) == "1" else self.feature.reason

    @cached_property
    def _count_form(self) -> tuple[str, str]:
        """The value's format spec, and the template for a count of one."""
        placeholder = _PLACEHOLDER.search(self.feature.reason)
        spec = (placeholder["spec"] or "") if placeholder else ""
        return spec, _singular(self.feature.reason)


@lru_cache(maxsize=1024)
def _wording(feature: Feature) -> _Wording:
    no_event, not_event = _NO_EVENT.match(feature.reason), _NOT_EVENT.match(feature.reason)
    if no_event:
        return _Wording(feature, f"No {no_event['what']} on record", True)
    if not_event:
        have = "has" if " has not " in feature.reason else "have"
        return _Wording(feature, f"{not_event['who']} {have} never {not_event['what']}", True)
    if feature.reason and "{value" not in feature.reason:
        return _Wording(feature, feature.reason, False)  # a flag's reason, e.g. no manager
    return _Wording(feature, f"{feature.description}: none on record", False)


def _say_flag(f: Feature, value: object) -> str:
    """A template without a value states a flag's off state: "No account manager assigned"."""
    if not value:
        return f.reason
    if f.reason.startswith("No "):
        return f.reason[3].upper() + f.reason[4:]  # on: "Account manager assigned"
    return f"{f.description}: {_plain(value)}"


def _plain(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_FLOATS = (float, np.floating)


def is_missing(value: object) -> bool:
    """Whether a feature value is missing: None, NA, NaT, or a float that is not finite."""
    if isinstance(value, _FLOATS):
        return not math.isfinite(value)
    return value is None or value is pd.NA or value is pd.NaT


def reason(feature: Feature, value: object) -> str:
    """The feature's value in plain words, by its reason template ("No contact for 74 days").

    A missing value reads naturally: "No contact on record", or "<description>: none on record".
    """
    w = _wording(feature)
    return w.missing if is_missing(value) else w.say(value)


# ---------------------------------------------------------------------------------------------
# Drivers


@dataclass(frozen=True, slots=True)
class Driver:
    """A feature that raises the client's risk: its value, contribution and the reason in words.

    ``value`` is a float (a str for categorical features, None when missing); ``contribution`` is
    in log-odds, positive (it raises risk).
    """

    feature: str
    value: Value
    contribution: float
    reason: str


@dataclass(frozen=True)
class _Layout:
    """Model columns mapped to their features, worked out once per (feature set, names)."""

    wordings: tuple[_Wording, ...]
    categorical: tuple[bool, ...]
    missing_is_signal: np.ndarray  # bool per column


@lru_cache(maxsize=64)
def _layout(feature_set: FeatureSet, names: tuple[str, ...]) -> _Layout:
    by_name = _wordings(feature_set)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(f"not features of the feature set: {unknown[:10]}")
    wordings = tuple(by_name[n] for n in names)
    return _Layout(
        wordings,
        tuple(w.feature.categorical for w in wordings),
        np.array([w.missing_is_signal for w in wordings], dtype=bool),
    )


def _contributions(contributions: np.ndarray, n_features: int) -> np.ndarray:
    """Contributions per feature; a trailing bias column (LightGBM's pred_contrib) is dropped."""
    c = np.asarray(contributions, dtype=np.float64)
    if c.shape[-1] == n_features + 1:
        c = c[..., :n_features]
    if c.shape[-1] != n_features:
        raise ValueError(
            f"{c.shape[-1]} contributions for {n_features} features "
            f"(expected {n_features}, or {n_features + 1} with a trailing bias column)"
        )
    return c


def _driver(w: _Wording, categorical: bool, value: object, contribution: float) -> Driver:
    if is_missing(value):
        return Driver(w.feature.name, None, contribution, w.missing)
    v: Value = str(value) if categorical else float(value)  # type: ignore[arg-type]
    return Driver(w.feature.name, v, contribution, w.say(v))


def top_drivers(
    names: Sequence[str],
    values: Sequence[Any] | np.ndarray | pd.Series,
    contributions: np.ndarray,
    feature_set: FeatureSet,
    k: int = 3,
) -> list[Driver]:
    """The k features that raise one client's risk most, largest contribution first.

    Args:
        names: the model's feature names, in column order.
        values: the client's feature values, in the same order.
        contributions: one contribution per feature in log-odds (sum one-hot or indicator
            columns into their feature first); a trailing bias column is dropped.
        feature_set: the feature catalogue the names come from (for the reason templates).
        k: at most this many drivers; fewer when fewer features raise the risk.
    """
    layout = _layout(feature_set, tuple(names))
    c = _contributions(contributions, len(names)).reshape(-1)
    row = values.tolist() if isinstance(values, pd.Series | np.ndarray) else values
    if len(row) != len(names):
        raise ValueError(f"{len(row)} values for {len(names)} features")
    rising = np.flatnonzero(c > 0) if k > 0 else np.empty(0, dtype=np.intp)
    drivers: list[Driver] = []
    for j in rising[np.argsort(-c[rising], kind="stable")].tolist():  # ties: column order
        value = row[j]
        if is_missing(value) and not layout.missing_is_signal[j]:
            continue
        drivers.append(_driver(layout.wordings[j], layout.categorical[j], value, float(c[j])))
        if len(drivers) >= k:
            break
    return drivers


def top_drivers_batch(
    names: Sequence[str],
    values_2d: pd.DataFrame | np.ndarray,
    contributions_2d: np.ndarray,
    feature_set: FeatureSet,
    k: int = 3,
) -> list[list[Driver]]:
    """``top_drivers`` for every row, the same drivers in the same order, selected vectorised.

    ``values_2d`` is a DataFrame holding the named columns, or an array with columns in the
    order of ``names``. Reasons are worded only for the selected drivers.
    """
    layout = _layout(feature_set, tuple(names))
    c = _contributions(contributions_2d, len(names))
    if isinstance(values_2d, pd.DataFrame):
        frame = values_2d[list(names)]
    else:
        frame = pd.DataFrame(values_2d, columns=list(names))
    if c.ndim != 2 or len(frame) != len(c):
        raise ValueError(f"{len(frame)} rows of values for contributions of shape {c.shape}")
    out: list[list[Driver]] = []
    for start in range(0, len(c), _BATCH_ROWS):
        block = slice(start, start + _BATCH_ROWS)
        out.extend(_block_drivers(layout, frame.iloc[block], c[block], k))
    return out


def _block_drivers(
    layout: _Layout, frame: pd.DataFrame, c: np.ndarray, k: int
) -> list[list[Driver]]:
    numbers, text, missing = _block_values(layout, frame)
    eligible = (c > 0) & (~missing | layout.missing_is_signal)
    score = np.where(eligible, c, -np.inf)
    idx = _top_k(score, k)
    picked = np.take_along_axis(score, idx, axis=1).tolist()
    cells = np.take_along_axis(numbers, idx, axis=1).tolist()
    gone = np.take_along_axis(missing, idx, axis=1).tolist()
    out = []
    for i, (cols, scores, nums, nones) in enumerate(
        zip(idx.tolist(), picked, cells, gone, strict=True)
    ):
        row = []
        for j, s, num, none in zip(cols, scores, nums, nones, strict=True):
            if s == -np.inf:  # fewer than k features raise this client's risk
                break
            w, t = layout.wordings[j], text[j]
            if none:
                row.append(Driver(w.feature.name, None, s, w.missing))
            else:
                v = num if t is None else str(t[i])
                row.append(Driver(w.feature.name, v, s, w.say(v)))
        out.append(row)
    return out


def _block_values(
    layout: _Layout, frame: pd.DataFrame
) -> tuple[np.ndarray, list[np.ndarray | None], np.ndarray]:
    """A block's numbers (NaN for text), its text columns, and where values are missing."""
    numeric = [j for j, text in enumerate(layout.categorical) if not text]
    numbers = np.full(frame.shape, np.nan)
    numbers[:, numeric] = frame.iloc[:, numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    missing = ~np.isfinite(numbers)
    text: list[np.ndarray | None] = [None] * frame.shape[1]
    for j in (j for j, text in enumerate(layout.categorical) if text):
        column = frame.iloc[:, j]
        text[j] = column.to_numpy(dtype=object)
        missing[:, j] = column.isna().to_numpy()
    return numbers, text, missing


def _top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest scores, largest first, ties in column order."""
    n, m = score.shape
    k = min(max(k, 0), m)
    if k == 0:
        return np.empty((n, 0), dtype=np.intp)
    kth = np.partition(score, m - k, axis=1)[:, m - k, None]  # each row's k-th largest
    above, tied = score > kth, score == kth
    chosen = above | tied
    room = k - above.sum(axis=1)
    crowded = np.flatnonzero(tied.sum(axis=1) > room)  # more ties than places: first ones win
    if len(crowded):
        t = tied[crowded]
        first = t & (np.cumsum(t, axis=1, dtype=np.int32) <= room[crowded, None])
        chosen[crowded] = above[crowded] | first
    idx = np.nonzero(chosen)[1].reshape(n, k)
    order = np.argsort(-np.take_along_axis(score, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


@lru_cache(maxsize=32)
def _wordings(feature_set: FeatureSet) -> dict[str, _Wording]:
    return {f.name: _wording(f) for f in feature_set.features}


__all__: Sequence[str] = (
    "Driver",
    "is_missing",
    "reason",
    "top_drivers",
    "top_drivers_batch",
)
