"""The playbook: rules that turn a client's features and drivers into recommended actions.

A playbook is YAML (format in the packaged ``playbook.yaml``); a user file replaces the default.
Each rule names features of the model's feature set, so a typo is an error at load time.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from churnguard.features.catalog import BASE_FEATURES, Feature, FeatureSet, event_features
from churnguard.scoring.explain import Driver, is_missing, reason

PLAYBOOK_FILE = "playbook.yaml"


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
            return is_missing(x) is self.value
        if is_missing(x) or isinstance(x, str) is not isinstance(self.value, str):
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
        by_name = _by_name(self.feature_set)
        said = []
        for name in dict.fromkeys(c.feature for c in conditions):
            value, feature = features.get(name), by_name.get(name)
            if feature is None:  # a feature outside the playbook's feature set
                said.append(f"{name}: {value}")
            else:
                said.append(reason(feature, value))
        return "; ".join(said)


@lru_cache(maxsize=32)
def _by_name(feature_set: FeatureSet) -> dict[str, Feature]:
    return {f.name: f for f in feature_set.features}


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


__all__: Sequence[str] = (
    "OPERATORS",
    "Action",
    "Condition",
    "Playbook",
    "PlaybookError",
    "Rule",
    "load_playbook",
)
