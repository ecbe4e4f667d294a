"""Default learners the benchmarks compare churnguard with, each with its library's defaults.

Every one is ``(training rows, training labels, test rows) -> (probabilities, note, raw or None)``
on raw feature columns (numbers and text), so all of them see the same rows on the same folds.
CatBoost is optional (``uv sync --extra bench``): ``available()`` leaves it out, and says so,
when it is not installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

SEED = 7

# (training rows, training labels, test rows) -> (probabilities, note, raw probabilities or None)
Predict = Callable[[pd.DataFrame, np.ndarray, pd.DataFrame], tuple[np.ndarray, str, Any]]


def kinds(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Numeric and text columns by dtype: what a plain baseline would do."""
    numeric = [c for c in rows.columns if pd.api.types.is_numeric_dtype(rows[c])]
    return numeric, [c for c in rows.columns if c not in numeric]


def predict_logistic(
    train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame
) -> tuple[np.ndarray, str, Any]:
    """Logistic regression with scikit-learn's defaults: median-imputed, scaled numbers, one-hot."""
    numeric, text = kinds(train)
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    prep = ColumnTransformer(
        [("num", numbers, numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), text)]
    )
    # max_iter only so lbfgs converges without a warning; the optimum is the default model's.
    model = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=1000))]).fit(train, y)
    return model.predict_proba(test)[:, 1], "defaults", None


def predict_lightgbm(
    train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame
) -> tuple[np.ndarray, str, Any]:
    """LightGBM with default parameters; text columns as pandas categoricals (its own handling)."""
    _, text = kinds(train)
    categories = {c: sorted(train[c].dropna().unique()) for c in text}

    def encode(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(**{c: pd.Categorical(rows[c], categories[c]) for c in text})

    model = LGBMClassifier(random_state=SEED, n_jobs=1, verbose=-1).fit(encode(train), y)
    return np.asarray(model.predict_proba(encode(test)))[:, 1], "defaults", None


def predict_catboost(
    train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame
) -> tuple[np.ndarray, str, Any]:
    """CatBoost with default parameters (1,000 trees, depth 6); text columns as its categoricals.

    One thread like the others; missing text becomes the category "NA" (CatBoost rejects NaN).
    """
    from catboost import CatBoostClassifier

    _, text = kinds(train)

    def encode(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(**{c: rows[c].astype("string").fillna("NA") for c in text})

    model = CatBoostClassifier(
        random_seed=SEED, thread_count=1, verbose=0, allow_writing_files=False, cat_features=text
    ).fit(encode(train), y)
    return np.asarray(model.predict_proba(encode(test)))[:, 1], "defaults", None


BASELINES: dict[str, Predict] = {
    "logistic": predict_logistic,
    "lightgbm": predict_lightgbm,
    "catboost": predict_catboost,
}


def available() -> dict[str, Predict]:
    """The baselines installed here (CatBoost only with the bench extra); says what is left out."""
    if importlib.util.find_spec("catboost") is not None:
        return dict(BASELINES)
    print("CatBoost is not installed (uv sync --extra bench): its baseline is left out")
    return {k: v for k, v in BASELINES.items() if k != "catboost"}
