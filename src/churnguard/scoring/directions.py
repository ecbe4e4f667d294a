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
    ) -> np.ndarray:
        """The contributions with every one that is not a reason set to 0.

        Args:
            X: the model's input rows.
            contributions: their per-column contributions.
            raw: the model's raw probabilities of input rows.
            candidates: per row, the largest positive contributions checked; the others are set
                to 0 too (the drivers are a few of the largest).
        """
        c = np.where(self.reasons, contributions, np.minimum(contributions, 0.0))
        k = min(candidates, c.shape[1])
        top = np.argsort(-c, axis=1, kind="stable")[:, :k]
        rows, cols = np.nonzero(np.take_along_axis(c, top, axis=1) > 0)
        cols = top[rows, cols]
        kept = np.zeros(c.shape, dtype=bool)
        if not len(rows):
            return np.where(c <= 0, c, 0.0)
        safer = X[rows].copy()
        safer[np.arange(len(rows)), cols] = self.safest[cols]
        both = raw(np.vstack([X, safer]))  # one call: each call of a booster costs
        pushes = both[: len(X)][rows] > both[len(X) :]
        kept[rows[pushes], cols[pushes]] = True
        return np.where(kept | (c <= 0), c, 0.0)


__all__: Sequence[str] = ("SAFEST", "Directions")
