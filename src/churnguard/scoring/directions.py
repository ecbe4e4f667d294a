"""Reasons that point the declared way: a feature is a reason only when it pushes risk up in the
direction its catalog declaration gives ("more_risk": a higher value means more risk;
"less_risk": a higher value means less risk).

A tree model can give a feature a positive contribution at a value that is not risky at all ("No
survey response for 1 day"); a logistic model can weigh a feature against its declared direction.
Either way the contribution is not a reason a manager can trust. The check asks the model itself:
does the client score higher at its value than at the feature's safest extreme (the value moved
all the way towards less risk, past every split of a tree)? Context features (segment, region,
monthly value) and facts shown beside the reasons (renewal timing) are never reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from churnguard.features.catalog import FeatureSet

SAFEST = 1e12  # past every split of a tree, deep in a logistic tail: "as safe as it gets"


@dataclass(frozen=True)
class Directions:
    """Per model column: whether it may be a reason, and its safest value."""

    reasons: np.ndarray  # bool: a declared direction, not context, not a fact
    safest: np.ndarray  # -SAFEST (more_risk), +SAFEST (less_risk), NaN (never a reason)

    @classmethod
    def of(cls, names: Sequence[str], feature_set: FeatureSet) -> Directions:
        """The directions of the model's columns, from the feature catalog."""
        by_name = {f.name: f for f in feature_set.features}
        sign = {"more_risk": -SAFEST, "less_risk": SAFEST}
        safest = [
            np.nan if by_name[n].fact else sign.get(by_name[n].direction, np.nan) for n in names
        ]
        a = np.array(safest, dtype=np.float64)
        return cls(~np.isnan(a), a)

    def agreeing(
        self,
        X: np.ndarray,
        contributions: np.ndarray,
        raw: Callable[[np.ndarray], np.ndarray],
        candidates: int,
        settled: int | None = None,
    ) -> np.ndarray:
        """The contributions with every one that is not a reason set to 0.

        Args:
            X: the model's input rows.
            contributions: their per-column contributions.
            raw: the model's raw probabilities of input rows.
            candidates: per row, the largest positive contributions checked; the others are set
                to 0 too (the drivers are a few of the largest).
            settled: when a row's first ``settled`` candidates all are reasons and have values
                (none missing), its later candidates are not checked but set to 0: the row's
                ``settled`` largest reasons are known without them.
        """
        c = np.where(self.reasons, contributions, np.minimum(contributions, 0.0))
        k = min(candidates, c.shape[1])
        top = np.argsort(-c, axis=1, kind="stable")[:, :k]
        first = k if settled is None else min(settled, k)
        kept = self._pushing(X, c, np.arange(len(X)), top[:, :first], raw)
        if first < k:
            head = np.take_along_axis(kept, top[:, :first], axis=1)
            valued = ~np.isnan(np.take_along_axis(X, top[:, :first], axis=1))
            later = np.flatnonzero(~(head & valued).all(axis=1))
            kept |= self._pushing(X, c, later, top[later, first:], raw)
        return np.where(kept | (c <= 0), c, 0.0)

    def _pushing(
        self,
        X: np.ndarray,
        c: np.ndarray,
        rows: np.ndarray,
        top: np.ndarray,
        raw: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """Where a positive candidate (``top``, of the given rows) pushes risk up: the row
        scores higher at its value than at the column's safest."""
        kept = np.zeros(c.shape, dtype=bool)
        at, j = np.nonzero(np.take_along_axis(c[rows], top, axis=1) > 0)
        if not len(at):
            return kept
        cols, rows = top[at, j], rows[at]
        safer = X[rows].copy()
        safer[np.arange(len(rows)), cols] = self.safest[cols]
        checked = np.unique(rows)
        both = raw(np.vstack([X[checked], safer]))  # one call: each call of a booster costs
        base = both[: len(checked)][np.searchsorted(checked, rows)]
        pushes = base > both[len(checked) :]
        kept[rows[pushes], cols[pushes]] = True
        return kept


__all__: Sequence[str] = ("SAFEST", "Directions")
