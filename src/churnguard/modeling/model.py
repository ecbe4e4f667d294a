"""The packaged churn model: point-in-time features -> calibrated churn probability in the horizon.

``ChurnModel`` is a plain object that joblib can save: the feature set it was trained on, the fitted
estimator (a scikit-learn ``Pipeline`` ending in a logistic regression, or an ``LGBMClassifier``),
a calibrator fitted on out-of-time data, the horizon and a metadata dict. It never imports MLflow
(importing ``mlflow.pyfunc`` costs about 5 s); the MLflow pyfunc wrapper lives in ``registry.py``.

Inputs are the feature columns ``compute_features`` returns. Categorical attributes may come as
strings or pandas categoricals; values never seen in training and missing values are fine (they
are aligned to the training categories, unknown -> missing). Extra columns (client_id, as_of) are
ignored; a missing feature column is an error.

For the per-client hot path and driver contributions: ``booster`` is the fitted LightGBM booster
(``booster.predict`` uses the early-stopped ``best_iteration``), ``coefficients`` the logistic
regression's weights on the transformed inputs, and ``calibrator.transform`` maps a raw
probability to the calibrated one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import joblib
import numpy as np
import pandas as pd
from lightgbm import Booster, LGBMClassifier
from sklearn.pipeline import Pipeline

from churnguard.features.catalog import FeatureSet
from churnguard.modeling.calibration import Calibrator
from churnguard.modeling.horizons import HorizonModel
from churnguard.modeling.linear import LinearTerms, linear_terms

logger = logging.getLogger(__name__)

ModelKind = Literal["logistic", "lightgbm"]
Estimator: TypeAlias = Pipeline | LGBMClassifier

MODEL_FILE = "champion.joblib"
CARD_FILE = "champion.json"


# ---------------------------------------------------------------------------------- the model


@dataclass
class ChurnModel:
    """A fitted, calibrated churn model over a declared feature set.

    Attributes:
        feature_set: the feature catalogue the model was trained on (pickled as its event types
            and attributes).
        kind: "logistic" or "lightgbm".
        estimator: the fitted Pipeline (logistic) or LGBMClassifier (raw probabilities).
        calibrator: maps raw probabilities to calibrated ones.
        horizon_days: the label horizon: P(churn within horizon_days after as_of).
        feature_names: input columns, in training order.
        categories: training categories of each categorical input.
        metadata: training facts (data digest, split, params, metrics, trained_at, ...).
        horizons: P(churn within 30/90/180 days) over the same inputs (``modeling.horizons``);
            None for a model trained without one.
    """

    feature_set: FeatureSet
    kind: ModelKind
    estimator: Estimator
    calibrator: Calibrator
    horizon_days: int
    feature_names: list[str]
    categories: dict[str, list[str]]
    metadata: dict[str, Any] = field(default_factory=dict)
    horizons: HorizonModel | None = None

    def inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        """The input frame: feature columns in order, categoricals on the training categories."""
        return align_inputs(features, self.feature_names, self.categories)

    def raw_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probabilities of the estimator; a logistic model's row by row.

        The logistic Pipeline's ``predict_proba`` is a matrix product whose last bits depend on
        the rows predicted together (BLAS blocking): its compiled ``LinearTerms`` give each row's
        bits alone, so a batch, a chunk, a Spark partition and one client agree exactly.
        """
        X = self.inputs(features)
        if isinstance(self.estimator, Pipeline):
            return self.linear_terms().probability(_codes_matrix(X))
        return np.asarray(self.estimator.predict_proba(X), dtype=np.float64)[:, 1]

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability within the horizon, one per row."""
        return self.calibrator.transform(self.raw_proba(features))

    @property
    def booster(self) -> Booster | None:
        """The fitted LightGBM booster (None for the logistic model)."""
        return self.estimator.booster_ if isinstance(self.estimator, LGBMClassifier) else None

    @property
    def coefficients(self) -> pd.Series | None:
        """Logistic weights by transformed input name (None for LightGBM); intercept last."""
        if not isinstance(self.estimator, Pipeline):
            return None
        names = self.estimator[:-1].get_feature_names_out()
        clf = self.estimator[-1]
        weights = np.r_[clf.coef_[0], clf.intercept_[0]]
        return pd.Series(weights, index=[*names, "intercept"], name="coefficient")

    def linear_terms(self) -> LinearTerms:
        """The logistic Pipeline compiled to arrays (TypeError for another estimator)."""
        if not isinstance(self.estimator, Pipeline):
            raise TypeError(f"a {self.kind} model has no linear terms")
        return linear_terms(self.estimator, self.feature_names, self.categories)

    def feature_importance(self) -> pd.Series:
        """Importance per input feature, summing to 1: LightGBM gain, or |standardised weight|."""
        if isinstance(self.estimator, LGBMClassifier):
            booster = self.estimator.booster_
            gain = np.asarray(booster.feature_importance("gain"), dtype=np.float64)
            raw = pd.Series(gain, index=booster.feature_name())
        else:
            coef = self.coefficients
            assert coef is not None
            raw = _group_by_feature(coef.drop("intercept").abs(), self.feature_names)
        raw = raw.reindex(self.feature_names, fill_value=0.0)
        total = raw.sum()
        return (raw / total if total > 0 else raw).rename("importance")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        fs = self.feature_set
        state["feature_set"] = FeatureSet(fs.event_types, fs.attributes)  # no cached catalogue
        return state


def align_inputs(
    features: pd.DataFrame, feature_names: list[str], categories: dict[str, list[str]]
) -> pd.DataFrame:
    """Feature columns in order: numbers as float64, categoricals on the given categories.

    Categorical values may come as strings or categoricals; unknown values become missing.
    """
    missing = [c for c in feature_names if c not in features.columns]
    if missing:
        raise KeyError(f"feature columns missing from the input: {missing[:10]}")
    columns: dict[str, Any] = {}
    for name in feature_names:
        values = features[name]
        if name in categories:
            known = pd.Index(categories[name])
            codes = known.get_indexer(pd.Index(values.astype(object)))  # unknown, missing: -1
            columns[name] = pd.Categorical.from_codes(codes, categories=known)
        else:
            columns[name] = pd.to_numeric(values).astype(np.float64).to_numpy()
    return pd.DataFrame(columns, index=features.index)


def _codes_matrix(inputs: pd.DataFrame) -> np.ndarray:
    """``align_inputs``' frame as float64: categoricals as their codes (missing: NaN)."""
    X = np.empty(inputs.shape)
    for j, (_, column) in enumerate(inputs.items()):
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy()
            X[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            X[:, j] = column.to_numpy(np.float64)
    return X


def _group_by_feature(weights: pd.Series, feature_names: list[str]) -> pd.Series:
    """Sum transformed-input weights back onto the feature each came from.

    Transformed names are ``num__<feature>``, ``num__missingindicator_<feature>`` and
    ``cat__<feature>_<category>``.
    """
    by_length = sorted(feature_names, key=len, reverse=True)  # longest prefix wins

    def source(name: str) -> str:
        bare = name.split("__", 1)[-1].removeprefix("missingindicator_")
        return next((f for f in by_length if bare == f or bare.startswith(f"{f}_")), bare)

    return weights.groupby([source(n) for n in weights.index]).sum()


# ---------------------------------------------------------------------------------- local copy


def model_card(model: ChurnModel, version: int | None, run_id: str | None) -> dict[str, Any]:
    """The JSON card saved next to the local model copy."""
    meta = model.metadata
    return {
        "model": meta.get("registered_model", "churnguard"),
        "version": version,
        "run_id": run_id,
        "kind": model.kind,
        "horizon_days": model.horizon_days,
        "trained_at": meta.get("trained_at"),
        "data_digest": meta.get("data_digest"),
        "package_version": meta.get("package_version"),
        "calibration": model.calibrator.method,
        "metrics": meta.get("metrics", {}),
        "features": model.feature_names,
    }


def save_local_model(model: ChurnModel, card: dict[str, Any], models_dir: Path) -> Path:
    """Save the champion and its card under models_dir atomically; returns the model path.

    Each file is written to a temporary file and moved into place, so a reader sees the old or
    the new file, never half of one. The card carries the model file's sha256, so a reader can
    tell a model and card written by different trainings apart (a crash between the two moves).
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / MODEL_FILE
    digest = _write_atomic(path, lambda f: joblib.dump(model, f))
    text = json.dumps({**card, "model_sha256": digest}, indent=2, default=str)
    _write_atomic(models_dir / CARD_FILE, lambda f: f.write(text.encode()))
    return path


class ChecksumMismatchError(ValueError):
    """The local model file is not the one its card describes."""


def load_local_model(models_dir: Path) -> ChurnModel:
    """The last-known-good champion saved under models_dir (FileNotFoundError when none).

    Raises:
        ChecksumMismatchError: the model file's sha256 differs from the card's.
    """
    path = models_dir / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"no local champion model at {path}; train or promote one first")
    card = load_model_card(models_dir)
    expected = card.get("model_sha256")
    if expected and expected != _sha256(path):
        raise ChecksumMismatchError(
            f"{path} does not match the sha256 in {CARD_FILE} (an interrupted save, or the file "
            "was changed): refused"
        )
    model = joblib.load(path)
    if not isinstance(model, ChurnModel):
        raise TypeError(f"{path} does not hold a ChurnModel")
    return model


def load_model_card(models_dir: Path) -> dict[str, Any]:
    """The card of the local champion ({} when there is none)."""
    path = models_dir / CARD_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _write_atomic(path: Path, write: Any) -> str:
    """Write via a temp file in the same folder and os.replace; returns the file's sha256."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        digest = _sha256(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
