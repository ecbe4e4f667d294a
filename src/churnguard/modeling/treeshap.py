"""Per-feature contributions (SHAP values) of a LightGBM model, many rows at once in numpy.

LightGBM's ``predict(pred_contrib=True)`` runs TreeSHAP (Lundberg et al., path-dependent) one row
and one tree at a time: O(leaves x depth^2) per tree and row. The same values follow from a table
made once per model. A root-to-leaf path of a tree with ``d`` distinct features adds to each of
those features j

    v * (o_j - z_j) * sum over S of the others of
        |S|! (d-1-|S|)! / d! * prod(o_k, k in S) * prod(z_k, k not in S)

where v is the leaf's value, z_k the share of the training rows that follow the path's splits on
feature k (their product, as LightGBM's ``data_count`` ratios) and o_k is 1 when the row follows
all of them, else 0. With o in {0, 1}^d, a path has at most 2^d different outcomes: they are
worked out once (``Explainer.of``), and a row's contributions are table look-ups, one per path
feature, summed per feature (Fast TreeSHAP v2, Yang 2021). Which way a row goes at each split is
LightGBM's own rule (``<=`` the threshold, its missing-value types, categorical sets).

The values equal LightGBM's up to float rounding (the sums run in another order), and a row's
values never depend on the rows computed with it: every path that needs them (batch, API, Spark)
uses this one function. Models this module does not cover (linear trees, several classes, paths
of more than ``MAX_PATH_FEATURES`` features) have ``Explainer.of`` return None: LightGBM's own
``pred_contrib`` then stays the one used.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MAX_PATH_FEATURES = 14  # 2^14 outcomes x 14 features per path at most
MAX_TABLE = 16_000_000  # look-up values (128 MB) at most; larger models are left to LightGBM
_WORK = 1_000_000  # values per step while the tables are worked out (bounds the temporaries)
BLOCK_ROWS = 64  # rows per vectorised block: its temporaries stay in the cache
_ZERO = 1e-35  # LightGBM's kZeroThreshold (a float)


@dataclass(frozen=True)
class _Path:
    tree: int
    leaf: int  # LightGBM's leaf index in its tree
    leaf_value: float
    features: list[int]  # distinct features, in first-split order
    zero: list[float]  # per feature: the product of the cover ratios along the path
    conditions: list[tuple[tuple[int, bool], ...]]  # per feature: (split, goes left), root first


@dataclass(frozen=True)
class _Position:
    """The ``r``-th feature of every path that has one (the first ``len(first_split)`` paths)."""

    first_split: np.ndarray  # its first split on the path, and the way the path goes there
    first_left: np.ndarray
    more: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]  # (paths, split, left) per rank


@dataclass(frozen=True)
class Explainer:
    """A LightGBM binary model's paths and their look-up tables (``Explainer.of``).

    Paths are ordered by their number of features, most first, so the paths that have an r-th
    feature are always the first ones.
    """

    n_features: int
    # splits of all trees: feature, threshold, missing values, categorical sets
    split_feature: np.ndarray
    threshold: np.ndarray
    nan_as_zero: np.ndarray  # bool: missing type "None" or "Zero" (NaN is read as 0)
    zero_missing: np.ndarray  # bool: missing type "Zero"
    nan_missing: np.ndarray  # bool: missing type "NaN"
    default_left: np.ndarray
    numeric: np.ndarray  # indices of numeric splits
    categorical: np.ndarray  # indices of categorical splits
    category_left: np.ndarray  # (categorical splits, codes): the code goes left
    positions: tuple[_Position, ...]
    path_offset: np.ndarray  # where each path's table starts
    path_width: np.ndarray  # its number of features
    path_leaf: np.ndarray  # (tree, leaf) of each path
    table: np.ndarray  # per path, per outcome pattern, per path feature: the contribution
    # every (path, position) ordered by feature (stable: tree and path order), for the sums
    slot_path: np.ndarray
    slot_position: np.ndarray
    feature_starts: np.ndarray  # first of each feature's slots, in that order
    features_used: np.ndarray  # the features those runs belong to

    @classmethod
    def of(cls, dump: dict[str, Any]) -> Explainer | None:
        """From ``Booster.dump_model()``; None (and a log line saying why) when the model is not
        one this module covers."""
        if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("average_output"):
            return _uncovered("it has several classes or averages its trees")
        splits: list[dict[str, Any]] = []
        paths: list[_Path] = []
        for t, tree in enumerate(dump["tree_info"]):
            if _linear(tree["tree_structure"]):
                return _uncovered("it has linear trees")
            _walk(tree["tree_structure"], t, splits, paths, [], [], [])
        paths = [p for p in paths if p.features]  # a one-leaf tree adds to no feature
        if any(len(p.features) > MAX_PATH_FEATURES for p in paths):
            return _uncovered(f"a path splits on more than {MAX_PATH_FEATURES} features")
        size = sum(len(p.features) << len(p.features) for p in paths)
        if size > MAX_TABLE:
            return _uncovered(f"its tables would hold {size:,} values (at most {MAX_TABLE:,})")
        paths.sort(key=lambda p: -len(p.features))  # stable: tree order within a width
        return _build(int(dump["max_feature_idx"]) + 1, splits, paths)

    def only(self, features: Sequence[int] | np.ndarray) -> Explainer:
        """This explainer computing the given features' contributions only (the others 0):
        each computed value has the same bits, at the cost of their look-ups alone."""
        counts = np.diff(np.r_[self.feature_starts, len(self.slot_path)])
        chosen = np.isin(self.features_used, np.asarray(features, dtype=np.int64))
        keep = np.repeat(chosen, counts)
        kept = counts[chosen]
        return replace(
            self,
            slot_path=self.slot_path[keep],
            slot_position=self.slot_position[keep],
            feature_starts=np.cumsum(np.r_[0, kept])[:-1].astype(self.feature_starts.dtype),
            features_used=self.features_used[chosen],
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions (log-odds) of input rows, shape (rows, features)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"rows of {self.n_features} features expected, got shape {X.shape}")
        out = np.zeros(X.shape)
        if not len(self.features_used):
            return out
        for start in range(0, len(X), BLOCK_ROWS):
            XT = np.ascontiguousarray(X[start : start + BLOCK_ROWS].T)
            at = self._table_rows(self._patterns(self._left(XT)))
            out[start : start + BLOCK_ROWS, self.features_used] = np.add.reduceat(
                self.table[at], self.feature_starts, axis=0
            ).T
        return out

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """Per row and path: whether the row reaches the path's leaf (for tests)."""
        XT = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T)
        full = (1 << self.path_width) - 1
        return np.asarray((self._patterns(self._left(XT)) == full[:, None]).T)

    def _left(self, XT: np.ndarray) -> np.ndarray:
        """Per split and row (rows are columns here): whether the row goes left, as LightGBM's
        ``NumericalDecision`` and ``CategoricalDecision`` have it."""
        left = np.empty((len(self.split_feature), XT.shape[1]), dtype=bool)
        num = self.numeric
        x = XT[self.split_feature[num]]
        nan = np.isnan(x)
        x[nan & self.nan_as_zero[num, None]] = 0.0
        by_default = (self.zero_missing[num, None] & (np.abs(x) <= _ZERO)) | (
            self.nan_missing[num, None] & nan
        )
        left[num] = np.where(
            by_default, self.default_left[num, None], x <= self.threshold[num, None]
        )
        if len(self.categorical):
            c = XT[self.split_feature[self.categorical]]
            code = np.trunc(np.where(np.isfinite(c), c, -1.0))  # C's int(): towards zero
            valid = (code >= 0) & (code < self.category_left.shape[1])  # others go right
            code = np.where(valid, code, 0).astype(np.intp)
            rows = np.arange(len(self.categorical))[:, None]
            left[self.categorical] = valid & self.category_left[rows, code]
        return left

    def _patterns(self, left: np.ndarray) -> np.ndarray:
        """Per path and row: bit r set when the row follows the path's splits on its r-th
        feature."""
        pattern = np.zeros((len(self.path_width), left.shape[1]), dtype=np.int32)
        for r, at in enumerate(self.positions):
            follows = left[at.first_split] == at.first_left[:, None]
            for paths, split, goes_left in at.more:  # features split on more than once
                follows[paths] &= left[split] == goes_left[:, None]
            pattern[: len(at.first_split)] |= follows.astype(np.int32) << r
        return pattern

    def _table_rows(self, pattern: np.ndarray) -> np.ndarray:
        """Per slot (in feature order) and row: the index of its contribution in ``table``."""
        start = self.path_offset[:, None] + pattern * self.path_width[:, None]
        return start[self.slot_path] + self.slot_position[:, None]


def _uncovered(why: str) -> Explainer | None:
    """None, said in the log: the model's contributions are left to LightGBM."""
    logger.info("tree contributions are left to LightGBM's pred_contrib (slower): %s", why)
    return None


def _linear(node: dict[str, Any]) -> bool:
    if "leaf_coeff" in node:
        return True
    return any(_linear(node[c]) for c in ("left_child", "right_child") if c in node)


def _walk(
    node: dict[str, Any],
    tree: int,
    splits: list[dict[str, Any]],
    paths: list[_Path],
    features: list[int],
    zero: list[float],
    conditions: list[tuple[tuple[int, bool], ...]],
) -> None:
    """Every root-to-leaf path of a tree, its splits numbered in ``splits``."""
    if "split_feature" not in node:
        leaf = int(node.get("leaf_index", 0))
        paths.append(_Path(tree, leaf, float(node["leaf_value"]), features, zero, conditions))
        return
    index = len(splits)
    splits.append(node)
    feature = int(node["split_feature"])
    count = float(node["internal_count"])
    for side, goes_left in (("left_child", True), ("right_child", False)):
        child = node[side]
        share = float(child.get("internal_count", child.get("leaf_count"))) / count
        f, z, c = list(features), list(zero), list(conditions)
        if feature in f:
            at = f.index(feature)
            z[at] *= share  # as LightGBM: the earlier splits' share times this one's
            c[at] = (*c[at], (index, goes_left))
        else:
            f.append(feature)
            z.append(share)
            c.append(((index, goes_left),))
        _walk(child, tree, splits, paths, f, z, c)


def _build(n_features: int, splits: list[dict[str, Any]], paths: list[_Path]) -> Explainer:
    kinds = [s["decision_type"] for s in splits]
    if any(k not in ("<=", "==") for k in kinds):
        raise ValueError(f"unknown LightGBM decision types: {sorted(set(kinds) - {'<=', '=='})}")
    categorical = np.array([k == "==" for k in kinds], dtype=bool)
    sets = [_category_set(s) for s, k in zip(splits, kinds, strict=True) if k == "=="]
    category_left = np.zeros((len(sets), max((max(c) + 1 for c in sets), default=1)), bool)
    for row, codes in enumerate(sets):
        category_left[row, codes] = True
    missing = [s.get("missing_type", "None") for s in splits]
    threshold = [
        0.0 if k == "==" else float(s["threshold"]) for s, k in zip(splits, kinds, strict=True)
    ]
    widths = np.array([len(p.features) for p in paths], dtype=np.int64)
    slots = [(p, r, f) for p, path in enumerate(paths) for r, f in enumerate(path.features)]
    slot_feature = np.array([f for _, _, f in slots], dtype=np.intp)
    by_feature = np.argsort(slot_feature, kind="stable")
    used, starts = np.unique(slot_feature[by_feature], return_index=True)
    return Explainer(
        n_features=n_features,
        split_feature=np.array([int(s["split_feature"]) for s in splits], dtype=np.intp),
        threshold=np.array(threshold, dtype=np.float64),
        nan_as_zero=np.array([m != "NaN" for m in missing], dtype=bool),
        zero_missing=np.array([m == "Zero" for m in missing], dtype=bool),
        nan_missing=np.array([m == "NaN" for m in missing], dtype=bool),
        default_left=np.array([bool(s.get("default_left", False)) for s in splits], dtype=bool),
        numeric=np.flatnonzero(~categorical),
        categorical=np.flatnonzero(categorical),
        category_left=category_left,
        positions=tuple(_position(paths, r) for r in range(int(widths.max(initial=0)))),
        path_offset=np.concatenate([[0], np.cumsum(widths << widths)])[:-1].astype(np.int64),
        path_width=widths,
        path_leaf=np.array([(p.tree, p.leaf) for p in paths], dtype=np.int64).reshape(-1, 2),
        table=_tables(paths),
        slot_path=np.array([p for p, _, _ in slots], dtype=np.intp)[by_feature],
        slot_position=np.array([r for _, r, _ in slots], dtype=np.int64)[by_feature],
        feature_starts=starts.astype(np.intp),
        features_used=used.astype(np.intp),
    )


def _position(paths: list[_Path], r: int) -> _Position:
    having = [p for p in paths if len(p.features) > r]  # the first ones: paths go widest first
    ranks = max(len(p.conditions[r]) for p in having)
    more = []
    for rank in range(1, ranks):
        rows = [
            (i, p.conditions[r][rank]) for i, p in enumerate(having) if len(p.conditions[r]) > rank
        ]
        more.append(
            (
                np.array([i for i, _ in rows], dtype=np.intp),
                np.array([split for _, (split, _) in rows], dtype=np.intp),
                np.array([left for _, (_, left) in rows], dtype=bool),
            )
        )
    return _Position(
        np.array([p.conditions[r][0][0] for p in having], dtype=np.intp),
        np.array([p.conditions[r][0][1] for p in having], dtype=bool),
        tuple(more),
    )


def _category_set(split: dict[str, Any]) -> list[int]:
    return [int(c) for c in str(split["threshold"]).split("||")]


def _tables(paths: list[_Path]) -> np.ndarray:
    """Every path's contributions for every outcome pattern (2^d patterns x d features, flat, in
    path order), worked out for many paths of a width at once."""
    out = []
    for d, group in itertools.groupby(paths, key=lambda p: len(p.features)):
        width = list(group)
        step = max(1, _WORK // (d << d))
        out += [_width_table(width[i : i + step], d) for i in range(0, len(width), step)]
    return np.concatenate(out) if out else np.zeros(0)


def _width_table(same: list[_Path], d: int) -> np.ndarray:
    """``_tables`` of paths of ``d`` features each."""
    z = np.array([p.zero for p in same])[:, None, :]  # (paths, 1, d)
    value = np.array([p.leaf_value for p in same])[:, None]
    o = ((np.arange(1 << d)[:, None] >> np.arange(d)) & 1).astype(np.float64)  # bit j = o_j
    weight = np.array([math.factorial(s) * math.factorial(d - 1 - s) for s in range(d)])
    weight = weight / math.factorial(d)
    table = np.empty((len(same), 1 << d, d))
    for j in range(d):
        # coefficients of t^s in the product over k != j of (z_k + o_k t): the other features
        # absent (a share z_k of the rows) or present (the row's own way, o_k)
        poly = np.zeros((len(same), 1 << d, d))
        poly[:, :, 0] = 1.0
        for k in range(d):
            if k != j:
                shifted = np.zeros_like(poly)
                shifted[:, :, 1:] = poly[:, :, :-1] * o[None, :, k, None]
                poly = poly * z[:, :, k, None] + shifted
        table[:, :, j] = value * (o[None, :, j] - z[:, :, j]) * (poly @ weight)
    return table.reshape(-1)


__all__: Sequence[str] = ("Explainer",)
