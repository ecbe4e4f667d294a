"""The logistic recipe and its compiled numpy form, kept together so they cannot drift apart.

``make_logistic`` builds the Pipeline: numeric columns are median-imputed with missing
indicators, heavy-tailed columns get a signed log1p (``HeavyTailLog``), then standard scaling;
categorical columns are one-hot encoded; a regularised logistic regression sits on top. The step
names are module constants, and ``linear_terms`` reads the fitted Pipeline through those same
names, so a change to the recipe is a change to one module.

``LinearTerms`` is the fitted Pipeline as arrays: the log-odds contribution of each input column
without pandas or scikit-learn, which the scorer's per-client hot path and its batch
contributions use, and the row-wise probabilities every prediction of a logistic model uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

# Step names of the recipe: make_logistic writes them, linear_terms reads them.
PREP, CLASSIFIER = "prep", "clf"
NUMERIC, CATEGORICAL = "num", "cat"
IMPUTE, LOG, SCALE = "impute", "log", "scale"


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): tames heavy tails, keeps sign and zero."""
    return np.sign(x) * np.log1p(np.abs(x))


class HeavyTailLog(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Signed log1p of the columns that are heavy-tailed in training; other columns unchanged.

    A column is heavy-tailed when its sample skewness exceeds ``skew_threshold`` in absolute value
    and it reaches beyond [-1, 1] (shares and flags are left alone).
    """

    def __init__(self, skew_threshold: float = 2.0) -> None:
        self.skew_threshold = skew_threshold

    def fit(self, X: Any, y: Any = None) -> HeavyTailLog:
        A = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        centred = A - np.nanmean(A, axis=0) if len(A) else A
        m2, m3 = np.nanmean(centred**2, axis=0), np.nanmean(centred**3, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            skew = np.where(m2 > 0, m3 / np.where(m2 > 0, m2, 1.0) ** 1.5, 0.0)
        self.log_columns_ = (np.abs(skew) > self.skew_threshold) & (np.nanmax(np.abs(A), 0) > 1)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "log_columns_")
        A = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        out = np.array(A, dtype=np.float64, copy=True)
        out[:, self.log_columns_] = signed_log1p(out[:, self.log_columns_])
        return out


def make_logistic(numeric: list[str], categorical: list[str], C: float) -> Pipeline:
    """Numbers: impute (median, missing flags), signed log1p of heavy tails, scale; one-hot."""
    numeric_steps = Pipeline(
        [
            (IMPUTE, SimpleImputer(strategy="median", add_indicator=True)),
            (LOG, HeavyTailLog()),
            (SCALE, StandardScaler()),
        ]
    )
    encode = OneHotEncoder(handle_unknown="ignore")
    prep = ColumnTransformer(
        [(NUMERIC, numeric_steps, numeric), (CATEGORICAL, encode, categorical)]
    )
    classifier = LogisticRegression(C=C, l1_ratio=0.0, max_iter=5000)
    return Pipeline([(PREP, prep), (CLASSIFIER, classifier)])


@dataclass(frozen=True)
class LinearTerms:
    """A fitted ``make_logistic`` Pipeline as arrays: contributions without pandas.

    Numeric columns: median imputation with missing indicators, signed log1p of heavy-tailed
    columns, standard scaling, times the weights; categorical columns: the one-hot weight of the
    column's category (unknown: 0; missing: the weight of a missing category seen in training).
    """

    numeric: np.ndarray  # input columns of the numeric block, in its order
    kept: np.ndarray  # numeric block positions the imputer keeps (not all-missing in training)
    median: np.ndarray  # per kept column
    indicated: np.ndarray  # numeric block positions with a missing indicator
    log: np.ndarray  # bool per imputer output column
    mean: np.ndarray  # per imputer output column
    scale: np.ndarray
    weight: np.ndarray
    categorical: np.ndarray  # input columns of the categorical block
    onehot: tuple[np.ndarray, ...]  # per categorical column: weight by code, last = missing
    intercept: float
    n_features: int

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Log-odds contribution of each input column, rows of X (categoricals as codes)."""
        out = np.zeros((len(X), self.n_features))
        values = X[:, self.numeric]
        missing = np.isnan(values)
        kept = values[:, self.kept]
        imputed = np.where(np.isnan(kept), self.median, kept)
        U = np.hstack([imputed, missing[:, self.indicated].astype(np.float64)])
        U[:, self.log] = signed_log1p(U[:, self.log])
        terms = (U - self.mean) / self.scale * self.weight
        block = np.zeros((len(X), len(self.numeric)))
        block[:, self.kept] = terms[:, : len(self.kept)]
        block[:, self.indicated] += terms[:, len(self.kept) :]
        out[:, self.numeric] = block
        for j, w in zip(self.categorical.tolist(), self.onehot, strict=True):
            codes = X[:, j]
            out[:, j] = w[np.where(np.isnan(codes), len(w) - 1, codes).astype(np.intp)]
        return out

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        """The intercept plus each row's contributions, added column by column, row-wise.

        A row's value never depends on the other rows of X (a matrix product's does: BLAS
        blocks it), so one client, a chunk and a Spark partition give the same bits.
        """
        z = np.full(len(X), self.intercept)
        for column in self.contributions(X).T:
            z += column
        return z

    def probability(self, X: np.ndarray) -> np.ndarray:
        """The uncalibrated churn probability of each row (the logistic of ``log_odds``)."""
        with np.errstate(over="ignore"):  # exp overflow -> inf -> probability 0, as it should
            return 1.0 / (1.0 + np.exp(-self.log_odds(X)))


def linear_terms(
    pipeline: Pipeline, feature_names: list[str], categories: dict[str, list[str]]
) -> LinearTerms:
    """Compile a fitted ``make_logistic`` Pipeline whose inputs are feature_names (in order).

    Args:
        categories: training categories of each categorical input; a column's codes index them.

    Raises:
        TypeError: the Pipeline is not laid out as ``make_logistic`` lays it out.
    """
    try:
        prep, clf = pipeline.named_steps[PREP], pipeline.named_steps[CLASSIFIER]
        num_cols, cat_cols = _block_columns(prep, NUMERIC), _block_columns(prep, CATEGORICAL)
        steps = prep.named_transformers_[NUMERIC].named_steps
        impute, log, scale = steps[IMPUTE], steps[LOG], steps[SCALE]
        coef = np.asarray(clf.coef_[0], dtype=np.float64)
        num_w = coef[prep.output_indices_[NUMERIC]]
        index = {n: j for j, n in enumerate(feature_names)}
        kept = np.flatnonzero(~np.isnan(np.asarray(impute.statistics_, dtype=np.float64)))
        indicated = (
            np.asarray(impute.indicator_.features_, dtype=np.intp)
            if impute.add_indicator
            else np.empty(0, np.intp)
        )
        width = len(kept) + len(indicated)
        onehot = _onehot_weights(prep, cat_cols, coef, categories) if cat_cols else ()
    except (AttributeError, KeyError, IndexError, ValueError) as exc:
        raise TypeError(f"not a make_logistic pipeline: {exc}") from exc
    return LinearTerms(
        numeric=np.array([index[c] for c in num_cols], dtype=np.intp),
        kept=kept,
        median=np.asarray(impute.statistics_, dtype=np.float64)[kept],
        indicated=indicated,
        log=np.asarray(log.log_columns_, dtype=bool),
        mean=np.asarray(scale.mean_, dtype=np.float64) if scale.with_mean else np.zeros(width),
        scale=np.asarray(scale.scale_, dtype=np.float64) if scale.with_std else np.ones(width),
        weight=num_w,
        categorical=np.array([index[c] for c in cat_cols], dtype=np.intp),
        onehot=onehot,
        intercept=float(clf.intercept_[0]),
        n_features=len(feature_names),
    )


def _block_columns(prep: Any, name: str) -> list[str]:
    """The input columns of one ColumnTransformer block ([] when it has none)."""
    for block, _, columns in prep.transformers_:
        if block == name:
            return list(columns)
    return []


def _onehot_weights(
    prep: Any, columns: list[str], coef: np.ndarray, categories: dict[str, list[str]]
) -> tuple[np.ndarray, ...]:
    """Per categorical column: the one-hot weight of each training category code, then missing."""
    encoder = prep.named_transformers_[CATEGORICAL]
    if getattr(encoder, "drop_idx_", None) is not None or getattr(
        encoder, "_infrequent_enabled", False
    ):
        raise ValueError("one-hot encoding with dropped or infrequent categories")
    weights = coef[prep.output_indices_[CATEGORICAL]]
    out, start = [], 0
    for name, seen in zip(columns, encoder.categories_, strict=True):
        by_label = {_label(v): weights[start + k] for k, v in enumerate(seen)}
        start += len(seen)
        codes = [by_label.get(c, 0.0) for c in categories[name]]
        out.append(np.array([*codes, by_label.get(None, 0.0)], dtype=np.float64))
    return tuple(out)


def _label(value: object) -> str | None:
    """A one-hot category as text; a missing category (NaN or None) as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)
