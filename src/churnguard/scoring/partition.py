"""Columnar batch scoring: the scores of a partition of clients as columns, by a pure function.

``score_partition(data, scorer, as_of, ...)`` scores every client of ``data`` active at as_of and
returns ``ScoreColumns``: one sequence per field of a score, the nested fields (drivers, actions,
what changed, the risk curve) as the JSON text the store keeps, and no object per client. It reads
only its arguments and writes nothing, so a process pool (``scoring.batch``) or a Spark job (one
call per partition of clients, ``ScoreColumns.frame()`` out) can run it, and the store writes its
``rows`` in bulk (``ScoreStore.save_score_rows``). ``score_features`` does the same from features
already computed. Field for field, the scores are ``Scorer.score_data``'s (the tests pin it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np
import pandas as pd

from churnguard.domain.contract import CRMData
from churnguard.scoring.horizons import curve_json
from churnguard.scoring.risk import revenue_at_risk, risk_band
from churnguard.scoring.score import actions_json, clients_info, drivers_json, score_as_of
from churnguard.scoring.scorer import CHUNK_ROWS, Scorer
from churnguard.store.columns import PER_ROW, ScoreRows, feature_digests
from churnguard.store.database import to_json
from churnguard.store.scores import ScoreSummary, change_texts

ClientInfo = tuple[str | None, str | None, str | None]  # account manager, segment, name
_NONE = to_json([])


@dataclass(frozen=True)
class ScoreColumns:
    """Scores of many clients as the store writes them, and which clients have drivers."""

    rows: ScoreRows
    explained: np.ndarray  # bool per client: drivers and actions were worked out

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def concat(cls, parts: Sequence[ScoreColumns], as_of: datetime, version: str) -> ScoreColumns:
        """The parts one after the other (all of one as_of and model version)."""
        columns = {name: [v for p in parts for v in getattr(p.rows, name)] for name in PER_ROW}
        rows = ScoreRows(as_of=as_of, model_version=version, **columns)
        explained = np.concatenate([p.explained for p in parts]) if parts else np.zeros(0, bool)
        return cls(rows, explained)

    def frame(self) -> pd.DataFrame:
        """One row per client, one column per field (as_of and model version repeated)."""
        columns = {f.name: getattr(self.rows, f.name) for f in fields(self.rows)}
        return pd.DataFrame({**columns, "explained": self.explained}, index=None)


def score_partition(
    data: CRMData,
    scorer: Scorer,
    as_of: datetime,
    drivers: bool = True,
    explain_from: float = 0.0,
    previous: Mapping[str, ScoreSummary] | None = None,
    threads: int = 1,
) -> ScoreColumns:
    """Score every client of ``data`` active at as_of, in client id order, as columns.

    Args:
        drivers, explain_from, previous: as in ``Scorer.score_data``.
        threads: LightGBM threads for contributions when LightGBM computes them (a model the
            ``modeling.treeshap`` tables do not cover; its ``pred_contrib`` hardly gains from more
            than one: run partitions in processes instead).
    """
    when = score_as_of(as_of)
    features = scorer.features_at(data, when)
    info = clients_info(data, features["client_id"])
    return score_features(scorer, features, when, info, previous, drivers, explain_from, threads)


def score_features(
    scorer: Scorer,
    features: pd.DataFrame,
    when: datetime,
    info: Sequence[ClientInfo],
    previous: Mapping[str, ScoreSummary] | None = None,
    drivers: bool = True,
    explain_from: float = 0.0,
    threads: int = 1,
    probability: np.ndarray | None = None,
    predict_threads: int = 1,
) -> ScoreColumns:
    """``score_partition`` from the clients' features (``Scorer.features_at``) and identities
    (``clients_info``), scored at ``when`` (``score_as_of``: UTC, to the second).

    ``probability``: the rows' ``Scorer.predict``, when already worked out; else the model
    predicts on ``predict_threads`` threads while the digests are made.
    """
    with ThreadPoolExecutor(1) as model:  # the model predicts (outside the GIL) meanwhile
        predicting = None
        if probability is None:
            predicting = model.submit(scorer.predict, features, predict_threads)
        digests = feature_digests(_digest_columns(scorer, features))
        curves = _curves(scorer, features, when)
        value = np.nan_to_num(features["monthly_value"].to_numpy(np.float64))
        ids = features["client_id"].tolist()
        before = [(previous or {}).get(c) for c in ids]
        if predicting is not None:
            probability = predicting.result()
    assert probability is not None
    explained = probability >= explain_from if drivers else np.zeros(len(features), bool)
    p = probability.tolist()
    texts = _explanations(scorer, features, explained, threads)
    rows = ScoreRows(
        as_of=when,
        model_version=scorer.version,
        client_id=ids,
        probability=p,
        band=np.asarray(risk_band(probability, scorer.thresholds)).tolist(),
        revenue_at_risk=np.asarray(revenue_at_risk(probability, value)).tolist(),
        monthly_value=value.tolist(),
        account_manager=[who[0] for who in info],
        segment=[who[1] for who in info],
        client_name=[who[2] for who in info],
        feature_digest=digests,
        drivers=texts[0],
        actions=texts[1],
        change=change_texts(before, p),
        curve=curves,
    )
    return ScoreColumns(rows, explained)


def _explanations(
    scorer: Scorer, features: pd.DataFrame, explained: np.ndarray, threads: int
) -> tuple[list[str], list[str]]:
    """Drivers and actions as JSON text per client ("[]" for the clients not explained)."""
    drivers, actions = [_NONE] * len(features), [_NONE] * len(features)
    chosen = np.flatnonzero(explained)
    if not len(chosen):
        return drivers, actions
    for start in range(0, len(chosen), CHUNK_ROWS):  # bounds the contribution arrays
        rows = chosen[start : start + CHUNK_ROWS]
        part = features.iloc[rows]
        contributions = scorer.reason_contributions(scorer.matrix(part), threads)
        for i, d, a in zip(rows.tolist(), *scorer.explain(part, contributions), strict=True):
            drivers[i], actions[i] = to_json(drivers_json(d)), to_json(actions_json(a, d))
    return drivers, actions


def _curves(scorer: Scorer, features: pd.DataFrame, when: datetime) -> list[str]:
    if scorer.model.horizons is None:
        return [to_json(None)] * len(features)
    return [to_json(curve_json(c)) for c in scorer.curves(features, when)]


def _digest_columns(scorer: Scorer, features: pd.DataFrame) -> dict[str, np.ndarray]:
    """The model's inputs as ``feature_digests`` takes them (``Scorer.feature_rows``' values)."""
    out = {}
    for name in scorer.names:
        if name in scorer.model.categories:
            column = features[name].astype(object)
            out[name] = column.where(column.notna(), None).to_numpy(object)
        else:
            out[name] = features[name].to_numpy(np.float64)
    return out


__all__: Sequence[str] = ("ClientInfo", "ScoreColumns", "score_features", "score_partition")
