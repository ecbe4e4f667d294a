"""The scorer: complete scores (probability, band, revenue at risk, drivers, actions, what changed).

Orchestration only: the feature engine computes the features, the model the probability and
contributions, ``explain`` the drivers, the playbook the actions, ``risk`` the band and revenue at
risk, and the store's previous scores say what changed.

Two paths give one answer. ``Scorer.score_records`` scores one client's validated API records: the
hot path (records -> engine arrays -> features -> a float64 numpy row -> LightGBM booster or the
logistic model's linear terms -> calibrator), with no DataFrame, Pipeline or MLflow in it.
``Scorer.score_data`` scores every client active at as_of in bulk through ``compute_features`` and
``ChurnModel.predict_proba``, with per-feature contributions (the expensive part) computed in
chunks on all cores. Both read the one feature engine, so the same records give the same score.

Contributions are log-odds: LightGBM's SHAP values (``modeling.treeshap``: LightGBM's own
``pred_contrib`` values to float rounding, 2.6-3.2x less CPU, and the same whichever rows are
computed together; checked against ``pred_contrib`` when the scorer starts), or the logistic model's
coefficient x transformed value summed back onto the feature it came from (a missing-value
indicator onto its feature, a one-hot column onto its categorical feature).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from tqdm import tqdm

from churnguard.domain.churn import active_clients
from churnguard.domain.contract import CRMData
from churnguard.features.engine import compute_features, feature_columns
from churnguard.features.records import client_arrays
from churnguard.modeling.model import ChurnModel
from churnguard.modeling.rowpredict import FEW, RowPredictor
from churnguard.modeling.treeshap import Explainer
from churnguard.scoring.directions import Directions
from churnguard.scoring.explain import Driver, top_drivers, top_drivers_batch
from churnguard.scoring.horizons import NO_CURVE, RENEWAL_FEATURE, RiskCurve, risk_curves
from churnguard.scoring.playbook import Action, Playbook
from churnguard.scoring.risk import revenue_at_risk, risk_band
from churnguard.scoring.score import (
    ClientScore,
    FeatureValue,
    client_info,
    clients_info,
    score_as_of,
)
from churnguard.store.scores import ScoreStore, ScoreSummary, describe_change

logger = logging.getLogger(__name__)

CHUNK_ROWS = 5_000  # clients per batch step: bounds contribution arrays, paces the progress bar
_PARITY = 1e-9  # the array paths must reproduce model.predict_proba this closely


class RecordsError(ValueError):
    """A client's records that the model cannot score: which client of a request, and why."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


# ---------------------------------------------------------------------------------- the scorer


class Scorer:
    """Scores clients with one model and playbook: one client from API records, or in bulk."""

    def __init__(
        self,
        model: ChurnModel,
        version: str,
        playbook: Playbook,
        thresholds: tuple[float, float] = (0.1, 0.3),
        top_k: int = 3,
        threads: int | None = None,
    ) -> None:
        """Prepare the hot path and check it reproduces ``model.predict_proba``.

        Args:
            threads: threads for batch contributions (default: every core); one-client
                predictions always run on one thread.

        Raises:
            TypeError: the model's estimator has a layout the array path cannot reproduce.
        """
        self.model = model
        self.version = version
        self.playbook = playbook
        self.thresholds = thresholds
        self.top_k = top_k
        self.threads = threads or os.cpu_count() or 1
        self.names = list(model.feature_names)
        self._numeric = [j for j, n in enumerate(self.names) if n not in model.categories]
        self._codes = {
            j: {c: k for k, c in enumerate(model.categories[n])}
            for j, n in enumerate(self.names)
            if n in model.categories
        }
        self._booster = model.booster
        # one to a few rows (a client, its direction check, its horizons) skip predict's overhead
        self._rows = None if self._booster is None else RowPredictor(self._booster)
        horizons = model.horizons
        self._horizon_rows = None if horizons is None else RowPredictor(horizons.booster)
        self._linear = model.linear_terms() if self._booster is None else None
        self._explainer = (
            None if self._booster is None else Explainer.of(self._booster.dump_model())
        )
        self._directions = Directions.of(self.names, model.feature_set)
        # drivers need the reasons' contributions only: the others are never drivers (~30% of
        # the demo model's look-ups are on context features and renewal timing)
        self._reason_explainer = (
            None
            if self._explainer is None
            else self._explainer.only(np.flatnonzero(self._directions.reasons))
        )
        risk_band(0.5, thresholds)  # thresholds are checked once, here
        self._check_parity()

    # --- one client: the hot path -------------------------------------------------------------

    def score_clients(
        self, clients: Iterable[tuple[BaseModel, datetime]], store: ScoreStore
    ) -> list[ClientScore]:
        """Score clients from their records, each compared with its latest stored score.

        Args:
            clients: each client's validated records (a ``records_model`` instance) and as_of.
            store: where the previous scores are, for "what changed".

        Raises:
            RecordsError: records the model cannot score: the client's position and why.
        """
        out = []
        for i, (records, as_of) in enumerate(clients):
            when = score_as_of(as_of)
            previous = store.previous_summary(records.client_id, when)  # type: ignore[attr-defined]
            try:
                out.append(self.score_records(records, when, previous))
            except ValueError as exc:  # explained in the message
                raise RecordsError(i, str(exc)) from exc
        return out

    def score_records(
        self, records: BaseModel, as_of: datetime, previous: ScoreSummary | None = None
    ) -> ClientScore:
        """Score one client's validated records (a ``records_model`` instance) at as_of.

        ``previous`` is the client's latest stored score before as_of (None: there is none).
        """
        when = score_as_of(as_of)
        arrays = client_arrays(records, self.model.feature_set.attributes)
        columns = feature_columns(
            arrays, np.zeros(1, np.int64), np.array([int(when.timestamp())]), self.model.feature_set
        )
        values = [_plain(columns[n][0]) for n in self.names]
        row = self._row(values)
        probability = float(self.model.calibrator.transform(self._raw(row, threads=1))[0])
        drivers = top_drivers(
            self.names,
            values,
            self._reasons(row, self._contributions(row, 1, reasons_only=True), 1)[0],
            self.model.feature_set,
            self.top_k,
        )
        features = dict(zip(self.names, values, strict=True))
        client = getattr(records, "client", None)
        to_end = np.array([float(columns[RENEWAL_FEATURE][0])])
        (curve,) = risk_curves(self.model.horizons, row, to_end, when, self._horizon_rows)
        monthly = _plain(columns["monthly_value"][0])
        value = float(monthly) if isinstance(monthly, float) else 0.0
        band = str(risk_band(probability, self.thresholds))
        at_risk = float(revenue_at_risk(probability, value))
        actions = self.playbook.actions(features, drivers)
        change = describe_change(previous, probability)
        client_id = records.client_id  # type: ignore[attr-defined]
        who = client_info(client)
        return self._client_score(
            client_id, when, probability, band, at_risk, value, drivers, actions, who, features,
            change, curve,
        )  # fmt: skip

    def _row(self, values: Sequence[FeatureValue]) -> np.ndarray:
        """The model's input row: numbers as float64, categoricals as training category codes."""
        row = np.empty((1, len(self.names)))
        for j, v in enumerate(values):
            codes = self._codes.get(j)
            if codes is None:
                row[0, j] = np.nan if v is None else v
            else:
                row[0, j] = codes.get(v, np.nan) if isinstance(v, str) else np.nan
        return row

    def _client_score(
        self,
        client_id: str,
        when: datetime,
        probability: float,
        band: str,
        at_risk: float,
        value: float,
        drivers: list[Driver],
        actions: list[Action],
        client: tuple[str | None, str | None, str | None],
        features: dict[str, FeatureValue],
        change: dict[str, Any],
        curve: RiskCurve,
    ) -> ClientScore:
        """One ClientScore of this scorer's model version (both paths build scores here)."""
        return ClientScore(
            client_id=client_id,
            as_of=when,
            probability=probability,
            band=band,
            revenue_at_risk=at_risk,
            monthly_value=value,
            drivers=drivers,
            actions=actions,
            model_version=self.version,
            account_manager=client[0],
            segment=client[1],
            client_name=client[2],
            features=features,
            change=change,
            curve=curve,
        )

    # --- many clients: the batch path --------------------------------------------------------

    def score_data(
        self,
        data: CRMData,
        as_of: datetime,
        drivers: bool = True,
        progress: bool = False,
        explain_from: float = 0.0,
        previous: Mapping[str, ScoreSummary] | None = None,
    ) -> list[ClientScore]:
        """Score every client active at as_of, in client id order.

        Args:
            drivers: False gives scores only (no drivers, no actions): contributions are the
                expensive part of a batch.
            explain_from: drivers and actions only for clients scored at least this probability
                (0: every client); the others get none.
            previous: each client's latest stored score before as_of, by client id, for "what
                changed" (``ScoreStore.previous_scores``); a client without one is "new".
        """
        chunks = self.iter_scores(data, as_of, drivers, progress, explain_from, previous)
        return [s for chunk in chunks for s in chunk]

    def iter_scores(
        self,
        data: CRMData,
        as_of: datetime,
        drivers: bool = True,
        progress: bool = False,
        explain_from: float = 0.0,
        previous: Mapping[str, ScoreSummary] | None = None,
    ) -> Iterator[list[ClientScore]]:
        """``score_data`` in chunks of clients, so a caller need not hold every score at once.

        Features and probabilities are computed for every client at once (vectorised);
        contributions, drivers, actions and the score objects chunk by chunk, the next chunk's
        contributions while this chunk's scores are built.
        """
        when = score_as_of(as_of)
        started = time.perf_counter()
        features = self.features_at(data, when)
        logger.info(
            "features of %s clients active at %s: %.1f s",
            f"{len(features):,}",
            f"{when:%Y-%m-%d}",
            time.perf_counter() - started,
        )
        probability = self.predict(features)
        info = clients_info(data, features["client_id"])
        explained = probability >= explain_from if drivers else np.zeros(len(features), bool)
        parts = [slice(s, s + CHUNK_ROWS) for s in range(0, len(features), CHUNK_ROWS)]

        def contributions(part: slice) -> np.ndarray:
            rows = features.iloc[part][explained[part]]
            if not len(rows):
                return np.empty((0, len(self.names)))
            X = self.matrix(rows)
            return self._reasons(X, self._chunked_contributions(X, True), self.threads)

        # the next chunk's contributions (LightGBM, outside the GIL) are computed while this
        # chunk's drivers, actions and score objects are built in Python
        with (
            ThreadPoolExecutor(max_workers=1) as pool,
            # disable=None: no bar when stderr is not a terminal (a log file would get it twice)
            tqdm(total=len(features), unit="client", disable=None if progress else True) as bar,
        ):
            ahead = deque(pool.submit(contributions, first) for first in parts[:1])
            for k, part in enumerate(parts):
                ahead.extend(pool.submit(contributions, nxt) for nxt in parts[k + 1 : k + 2])
                found = ahead.popleft().result()
                chunk = features.iloc[part]
                p, who, chosen = probability[part], info[part], explained[part]
                yield self._scores(chunk, when, p, who, chosen, found, previous or {})
                bar.update(len(chunk))

    def features_at(self, data: CRMData, as_of: datetime) -> pd.DataFrame:
        """Features of every client active at as_of (client_id, as_of, then the features)."""
        when = score_as_of(as_of)
        stamp = pd.Timestamp(when).as_unit("s")
        ids = active_clients(data.contracts, stamp)
        snapshots = pd.DataFrame({"client_id": ids, "as_of": [stamp] * len(ids)})
        return compute_features(data, snapshots, self.model.feature_set)

    def predict(self, features: pd.DataFrame, threads: int = 1) -> np.ndarray:
        """Calibrated churn probabilities, through the model's own DataFrame path.

        ``threads`` parts of the rows are predicted side by side (the model predicts outside the
        GIL; each row's bits do not depend on the rows predicted with it, so the same result).
        """
        bounds = np.linspace(0, len(features), max(1, min(threads, len(features))) + 1)
        parts = [features.iloc[a:b] for a, b in itertools.pairwise(bounds.astype(int).tolist())]
        if len(parts) <= 1:
            return self.model.predict_proba(features)
        with ThreadPoolExecutor(len(parts)) as pool:
            return np.concatenate(list(pool.map(self.model.predict_proba, parts)))

    def contributions(self, features: pd.DataFrame) -> np.ndarray:
        """Log-odds contribution of each model feature, shape (rows, len(feature_names)).

        LightGBM: SHAP values, which with the booster's constant bias sum to the raw logit;
        logistic: they sum to the decision function minus the intercept.
        """
        return self._chunked_contributions(self.matrix(features))

    def reason_contributions(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Contributions of input rows (``matrix``) that are reasons; the others set to 0."""
        threads = threads or self.threads
        return self._reasons(X, self._contributions(X, threads, reasons_only=True), threads)

    def _chunked_contributions(self, X: np.ndarray, reasons_only: bool = False) -> np.ndarray:
        out = np.empty((len(X), len(self.names)))
        for start in range(0, len(X), CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS)
            out[part] = self._contributions(X[part], self.threads, reasons_only)
        return out

    def explain(
        self,
        features: pd.DataFrame,
        contributions: np.ndarray,
        rows: list[dict[str, FeatureValue]] | None = None,
    ) -> tuple[list[list[Driver]], list[list[Action]]]:
        """Drivers and playbook actions of each row of a features frame, from its contributions.

        ``rows`` are the rows' feature values by name (``feature_rows``), when already at hand.
        """
        drivers = top_drivers_batch(
            self.names, features, contributions, self.model.feature_set, self.top_k
        )
        rows = self.feature_rows(features) if rows is None else rows
        actions = [self.playbook.actions(f, d) for f, d in zip(rows, drivers, strict=True)]
        return drivers, actions

    def curves(self, features: pd.DataFrame, when: datetime) -> list[RiskCurve]:
        """Each row's risk over several horizons and at its renewal (none without the model)."""
        if self.model.horizons is None:
            return [NO_CURVE] * len(features)
        to_end = features[RENEWAL_FEATURE].to_numpy(np.float64)
        return risk_curves(self.model.horizons, self.matrix(features), to_end, when)

    def feature_rows(self, features: pd.DataFrame) -> list[dict[str, FeatureValue]]:
        """Each row's model inputs by name, as ``score_records`` gives them (missing = None)."""
        columns = []
        for name in self.names:
            if name in self.model.categories:
                column = features[name].astype(object)
                columns.append(column.where(column.notna(), None).tolist())
            else:
                a = features[name].to_numpy(np.float64)
                values = a.astype(object)
                values[np.isnan(a)] = None
                columns.append(values.tolist())
        return [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        """The model's inputs as float64 (categoricals as training category codes, missing NaN)."""
        aligned = self.model.inputs(features)
        X = np.empty(aligned.shape)
        X[:, self._numeric] = aligned.iloc[:, self._numeric].to_numpy(np.float64)
        for j in self._codes:
            codes = aligned.iloc[:, j].cat.codes.to_numpy()
            X[:, j] = np.where(codes >= 0, codes, np.nan)
        return X

    def _scores(
        self,
        features: pd.DataFrame,
        when: datetime,
        probability: np.ndarray,
        info: list[tuple[str | None, str | None, str | None]],
        explained: np.ndarray,
        contributions: np.ndarray,
        previous: Mapping[str, ScoreSummary],
    ) -> list[ClientScore]:
        """Score objects of a chunk; drivers and actions for the rows marked explained.

        ``contributions`` are those of the explained rows, in order.
        """
        rows = self.feature_rows(features)
        drivers: list[list[Driver]] = [[] for _ in rows]
        actions: list[list[Action]] = [[] for _ in rows]
        chosen = np.flatnonzero(explained).tolist()
        if chosen:
            part = features.iloc[chosen]
            found = self.explain(part, contributions, [rows[i] for i in chosen])
            for i, d, a in zip(chosen, *found, strict=True):
                drivers[i], actions[i] = d, a
        value = np.nan_to_num(features["monthly_value"].to_numpy(np.float64))
        curves = self.curves(features, when)
        columns = zip(
            features["client_id"].tolist(),
            probability.tolist(),
            np.asarray(risk_band(probability, self.thresholds)).tolist(),
            np.asarray(revenue_at_risk(probability, value)).tolist(),
            value.tolist(),
            drivers,
            actions,
            info,
            rows,
            curves,
            strict=True,
        )
        return [
            self._client_score(
                cid, when, p, b, r, v, d, a, who, f, describe_change(previous.get(cid), p), c
            )
            for cid, p, b, r, v, d, a, who, f, c in columns
        ]

    # --- model arithmetic on arrays ----------------------------------------------------------

    def _raw(self, X: np.ndarray, threads: int) -> np.ndarray:
        """Uncalibrated probabilities of input rows."""
        if self._rows is not None and (threads == 1 or len(X) <= FEW):
            return self._rows(X)
        if self._booster is not None:
            return np.asarray(self._booster.predict(X, num_threads=threads), dtype=np.float64)
        assert self._linear is not None
        return self._linear.probability(X)  # row-wise, as ChurnModel.raw_proba: the same bits

    def _contributions(self, X: np.ndarray, threads: int, reasons_only: bool = False) -> np.ndarray:
        """Per-feature log-odds contributions of input rows (no bias column); with
        ``reasons_only`` those of features that are never reasons may be left 0 (``_reasons``
        sets them to at most 0 anyway, and drivers take positive ones only)."""
        if self._explainer is not None:
            chosen = self._reason_explainer if reasons_only else self._explainer
            assert chosen is not None
            return chosen.contributions(X)
        if self._booster is not None:
            c = self._booster.predict(X, pred_contrib=True, num_threads=threads)
            return np.asarray(c, dtype=np.float64)[:, :-1]
        assert self._linear is not None
        return self._linear.contributions(X)

    def _reasons(self, X: np.ndarray, contributions: np.ndarray, threads: int) -> np.ndarray:
        """Contributions of input rows, those that are not reasons (``Directions``) set to 0
        (those after a row's top_k largest reasons may be left unchecked: 0 too)."""
        return self._directions.agreeing(
            X, contributions, lambda rows: self._raw(rows, threads), 2 * self.top_k, self.top_k
        )

    def _check_parity(self) -> None:
        """The array path must give the model's own probabilities on awkward rows, or refuse;
        the tree contributions must be LightGBM's own, or LightGBM computes them."""
        probe = _probe_frame(self.model)
        pipeline = self.model.estimator.predict_proba(self.model.inputs(probe))
        expected = np.asarray(pipeline, dtype=np.float64)[:, 1]
        X = self.matrix(probe)
        got = self._raw(X, threads=1)
        worst = float(np.max(np.abs(got - expected)))
        if not worst <= _PARITY:
            raise TypeError(
                f"the array path of this {self.model.kind} model differs from its predict_proba by "
                f"{worst:.3g}; it cannot be scored safely"
            )
        if self._explainer is not None and self._booster is not None:
            own = np.asarray(self._booster.predict(X, pred_contrib=True, num_threads=1))[:, :-1]
            off = float(np.max(np.abs(self._explainer.contributions(X) - own)))
            if not off <= _PARITY:
                logger.warning(
                    "tree contributions differ from LightGBM's pred_contrib by %.3g on test rows: "
                    "LightGBM computes them (slower)",
                    off,
                )
                self._explainer = None


# ---------------------------------------------------------------------------------- helpers


def _plain(value: object) -> FeatureValue:
    """An engine value as JSON-ready Python: float, str, or None when missing."""
    if value is None or isinstance(value, str):
        return value
    v = float(value)  # type: ignore[arg-type]
    return None if math.isnan(v) else v


def _probe_frame(model: ChurnModel) -> pd.DataFrame:
    """Rows that exercise every path: missing, zero, negative, large values; each category,
    a missing and an unknown one."""
    grid = [np.nan, 0.0, 1.0, 0.5, 3.0, 42.0, -7.0, 1e4, 2.5e5]
    n = max([len(grid), *(len(c) + 2 for c in model.categories.values())])
    columns: dict[str, Any] = {}
    for j, name in enumerate(model.feature_names):
        if name in model.categories:
            labels = [*model.categories[name], None, "not a category seen in training"]
            columns[name] = [labels[i % len(labels)] for i in range(n)]
        else:
            columns[name] = [grid[(i + j) % len(grid)] for i in range(n)]
    return pd.DataFrame(columns)


__all__: Sequence[str] = ("CHUNK_ROWS", "RecordsError", "Scorer")
