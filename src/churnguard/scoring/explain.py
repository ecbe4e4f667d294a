"""Drivers -> reasons -> playbook actions: what a churn score says about why, and what to do.

A model hands over per-feature contributions to a client's risk (log-odds: LightGBM's
``pred_contrib`` or a logistic model's coefficient x standardised value). Only contributions that
raise risk are reasons to act; the largest become the score's drivers, each stated in plain words
by its feature's reason template (``features.py``). A playbook (YAML, format in the packaged
``playbook.yaml``) turns the client's features and drivers into recommended actions.

Missing values: a driver whose value is missing is skipped, unless the missingness is itself the
signal. That is read from the reason template: "No contact for {value} days" with no value means
no contact on record, so the driver stays and says so.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from churnguard.features.engine import BASE_FEATURES, Feature, FeatureSet, event_features

Value = float | str | None

RISK_BANDS = ("low", "medium", "high")
PLAYBOOK_FILE = "playbook.yaml"
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


def _is_missing(value: object) -> bool:
    if isinstance(value, _FLOATS):
        return not math.isfinite(value)
    return value is None or value is pd.NA or value is pd.NaT


def reason(feature: Feature, value: object) -> str:
    """The feature's value in plain words, by its reason template ("No contact for 74 days").

    A missing value reads naturally: "No contact on record", or "<description>: none on record".
    """
    w = _wording(feature)
    return w.missing if _is_missing(value) else w.say(value)


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
    if _is_missing(value):
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
        if _is_missing(value) and not layout.missing_is_signal[j]:
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


# ---------------------------------------------------------------------------------------------
# Playbook


class PlaybookError(ValueError):
    """A playbook file that cannot be used: which file, which rule, what is wrong."""


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}
OPERATORS = (*_COMPARE, "missing")
_ABSENT = object()  # a feature the client's record does not have at all


@dataclass(frozen=True)
class Condition:
    """One test of a feature's value: ``feature op value`` (op "missing": is it missing?)."""

    feature: str
    op: str
    value: float | str | bool

    def holds(self, x: object) -> bool:
        """Whether the condition holds on a value; comparisons never hold on a missing value."""
        if x is _ABSENT:
            return False
        if self.op == "missing":
            return _is_missing(x) is self.value
        if _is_missing(x) or isinstance(x, str) is not isinstance(self.value, str):
            return False
        return _COMPARE[self.op](x, self.value)


@dataclass(frozen=True)
class Rule:
    """A playbook entry: when any alternative's conditions all hold, recommend the action."""

    action: str
    when: tuple[tuple[Condition, ...], ...]  # alternatives, each a conjunction
    priority: int

    def holding(self, features: Mapping[str, Any]) -> list[tuple[Condition, ...]]:
        """The alternatives whose conditions all hold (none: the rule does not fire)."""
        out = []
        for alternative in self.when:
            for c in alternative:
                if not c.holds(features.get(c.feature, _ABSENT)):
                    break
            else:
                out.append(alternative)
        return out


@dataclass(frozen=True)
class Action:
    """A recommended action, why (the driver or feature value it answers) and its priority."""

    action: str
    why: str
    priority: int


@dataclass(frozen=True)
class Playbook:
    """Rules that turn a client's features and drivers into recommended actions."""

    rules: tuple[Rule, ...]
    feature_set: FeatureSet = field(default_factory=FeatureSet)  # to word a rule's why

    def actions(
        self,
        features: Mapping[str, Any],
        drivers: Sequence[Driver],
        limit: int = 3,
    ) -> list[Action]:
        """Actions for one client: rules answering its top drivers first, then by priority.

        Args:
            features: the client's feature values by name (a dict, or a row as a pandas Series).
            drivers: the client's top drivers, from ``top_drivers``.
            limit: at most this many actions, each action text once.
        """
        out: dict[str, Action] = {}
        for rule, best, conditions in self._fired(features, drivers):
            if len(out) >= limit:
                break
            if rule.action not in out:
                why = best.reason if best else self._why(conditions, features)
                out[rule.action] = Action(rule.action, why, rule.priority)
        return list(out.values())

    def _fired(
        self, features: Mapping[str, Any], drivers: Sequence[Driver]
    ) -> list[tuple[Rule, Driver | None, tuple[Condition, ...]]]:
        """The rules that fire, best first, each with the top driver it answers (if any)."""
        by_feature: dict[str, Driver] = {}
        for d in drivers:
            if d.feature not in by_feature or d.contribution > by_feature[d.feature].contribution:
                by_feature[d.feature] = d
        ranked = []
        for i, rule in enumerate(self.rules):
            holding = rule.holding(features)
            if holding:
                answered = [
                    by_feature[c.feature] for a in holding for c in a if c.feature in by_feature
                ]
                best = max(answered, key=lambda d: d.contribution) if answered else None
                key = (best is None, -best.contribution if best else 0.0, rule.priority, i)
                ranked.append((key, rule, best, holding[0]))
        ranked.sort(key=lambda r: r[0])
        return [(rule, best, conditions) for _, rule, best, conditions in ranked]

    def _why(self, conditions: tuple[Condition, ...], features: Mapping[str, Any]) -> str:
        """The values that fired a rule, in words, when no driver answers it."""
        wordings = _wordings(self.feature_set)
        said = []
        for name in dict.fromkeys(c.feature for c in conditions):
            value, w = features.get(name), wordings.get(name)
            if w is None:  # a feature outside the playbook's feature set
                said.append(f"{name}: {value}")
            else:
                said.append(w.missing if _is_missing(value) else w.say(value))
        return "; ".join(said)


@lru_cache(maxsize=32)
def _wordings(feature_set: FeatureSet) -> dict[str, _Wording]:
    return {f.name: _wording(f) for f in feature_set.features}


def load_playbook(
    path: Path | str | None = None, feature_set: FeatureSet | None = None
) -> Playbook:
    """Read a playbook: the packaged default, or a user file that replaces it.

    Args:
        path: a YAML playbook; None reads the default shipped in the package.
        feature_set: the model's feature set: every feature a rule names must be one of its
            features. None: the base catalogue (no event-type features).

    Raises:
        PlaybookError: the file is not valid YAML, or a rule is malformed (names file and rule).
    """
    if path is None:
        source = f"churnguard/scoring/{PLAYBOOK_FILE}"
        text = (
            resources.files("churnguard.scoring")
            .joinpath(PLAYBOOK_FILE)
            .read_text(encoding="utf-8")
        )
    else:
        source, text = str(path), Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PlaybookError(f"{source}: not valid YAML: {e}") from e
    return _parse_playbook(data, source, feature_set)


def _parse_playbook(data: object, source: str, feature_set: FeatureSet | None) -> Playbook:
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        got = type(rules if isinstance(data, dict) else data).__name__
        raise PlaybookError(f"{source}: expected a mapping with 'rules:' as a list, got {got}")
    known = _names(feature_set)
    parsed = []
    for i, raw in enumerate(rules):
        where = f"{source}: rules[{i}]"
        if isinstance(raw, dict) and isinstance(raw.get("action"), str):
            where += f" ({raw['action']!r})"
        try:
            parsed.append(_parse_rule(raw, known))
        except PlaybookError as e:
            raise PlaybookError(f"{where}: {e}") from None
    return Playbook(tuple(parsed), FeatureSet() if feature_set is None else feature_set)


@dataclass(frozen=True)
class _Names:
    """The feature names a playbook may use: a feature set's (default: the base catalogue)."""

    names: frozenset[str]
    events_known: bool  # whether the names include the features of the data's event types

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names

    def unknown(self, name: object) -> str:
        """What is wrong with an unknown name, with the likeliest intended one."""
        close = difflib.get_close_matches(name, self.names, n=1) if isinstance(name, str) else []
        if close:
            return f"unknown feature {name!r}; did you mean {close[0]!r}?"
        if not self.events_known and isinstance(name, str) and _EVENT_NAME.fullmatch(name):
            return (
                f"unknown feature {name!r}; event-type features need the model's feature set: "
                "load_playbook(path, feature_set=...)"
            )
        return f"unknown feature {name!r}"


_EVENT_NAME = re.compile(
    "|".join(re.escape(f.name).replace("event", "[0-9a-z_]+") for f in event_features("event"))
)


def _names(feature_set: FeatureSet | None) -> _Names:
    if feature_set is None:
        return _Names(frozenset(f.name for f in BASE_FEATURES), events_known=False)
    return _Names(frozenset(feature_set.names), events_known=True)


def _parse_rule(raw: object, known: _Names) -> Rule:
    if not isinstance(raw, dict):
        raise PlaybookError(f"a rule must be a mapping (action, priority, when), got {raw!r}")
    extra = set(raw) - {"action", "priority", "when"}
    if extra:
        raise PlaybookError(f"unknown keys {sorted(extra)}; a rule has action, priority, when")
    action, priority = raw.get("action"), raw.get("priority")
    if not isinstance(action, str) or not action.strip():
        raise PlaybookError("'action' must be non-empty text")
    if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
        raise PlaybookError(f"'priority' must be an integer >= 1, got {priority!r}")
    return Rule(action.strip(), _parse_when(raw.get("when"), known), priority)


def _parse_when(raw: object, known: _Names) -> tuple[tuple[Condition, ...], ...]:
    """Conditions as alternatives of conjunctions: ``any`` multiplies out against the rest."""
    if not isinstance(raw, dict) or not raw:
        raise PlaybookError(f"conditions must be a mapping {{feature: {{op: value}}}}, got {raw!r}")
    alls = tuple(c for name, ops in raw.items() if name != "any" for c in _parse(name, ops, known))
    if "any" not in raw:
        return (alls,)
    options = raw["any"]
    if not isinstance(options, list) or not options:
        raise PlaybookError(f"'any' must be a non-empty list of conditions, got {options!r}")
    return tuple(alls + alt for option in options for alt in _parse_when(option, known))


def _parse(name: object, ops: object, known: _Names) -> list[Condition]:
    if name not in known:
        raise PlaybookError(known.unknown(name))
    if not isinstance(ops, dict) or not ops:
        raise PlaybookError(f"{name}: expected {{operator: value}}, e.g. {{gte: 45}}, got {ops!r}")
    return [_condition(str(name), op, value) for op, value in ops.items()]


def _condition(name: str, op: object, value: object) -> Condition:
    if op not in OPERATORS:
        raise PlaybookError(f"{name}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if op == "missing" and not isinstance(value, bool):
        raise PlaybookError(f"{name}: 'missing' takes true or false, got {value!r}")
    if op in ("eq", "ne") and not (number or isinstance(value, str)):
        raise PlaybookError(f"{name}: {op} takes a number or text, got {value!r}")
    if op in ("lt", "lte", "gt", "gte") and not number:
        raise PlaybookError(f"{name}: {op} takes a number, got {value!r}")
    return Condition(name, str(op), value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Risk band and revenue at risk


def risk_band(
    probability: float | np.ndarray, thresholds: tuple[float, float] = (0.1, 0.3)
) -> str | np.ndarray:
    """The risk band: "low" below thresholds[0], "high" from thresholds[1] on, else "medium".

    Raises:
        ValueError: thresholds not two ascending numbers in (0, 1), or a probability outside
            [0, 1] or missing.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (2,) or not (0 < t[0] < t[1] < 1):
        raise ValueError(f"thresholds must be two ascending numbers in (0, 1), got {thresholds}")
    p = np.asarray(probability, dtype=np.float64)
    if not ((p >= 0) & (p <= 1)).all():  # NaN fails both
        raise ValueError("probabilities must lie in [0, 1] and not be missing")
    bands = np.array(RISK_BANDS)[np.searchsorted(t, p, side="right")]
    return str(bands) if bands.ndim == 0 else bands


def revenue_at_risk(
    probability: float | np.ndarray, monthly_value: float | np.ndarray
) -> float | np.ndarray:
    """Expected yearly revenue lost: probability x monthly value x 12."""
    out = np.multiply(probability, monthly_value) * 12
    return float(out) if np.ndim(out) == 0 else out


__all__: Sequence[str] = (
    "OPERATORS",
    "RISK_BANDS",
    "Action",
    "Condition",
    "Driver",
    "Playbook",
    "PlaybookError",
    "Rule",
    "load_playbook",
    "reason",
    "revenue_at_risk",
    "risk_band",
    "top_drivers",
    "top_drivers_batch",
)
