"""Candidate recipes: the estimators churnguard tries, and how each is fitted.

A recipe is ``(name, kind, params)``. The logistic recipe (``make_logistic``, in ``linear.py`` with
its compiled form) is tried at three strengths. LightGBM (``make_lightgbm``), only with enough churn
events to learn interactions from, runs a small budgeted search (``LIGHTGBM_SEARCH``), each
configuration early-stopped: shallow, strongly regularised trees (4 or 16 leaves, L2 5, rate 0.03)
whose rows per leaf scale with the churn events (``min_child_rows``: a fifth of them, 20 to 100:
stronger shrinkage where events are few; on 1,000 simulated clients, 9 businesses x cutoffs, a
fifth lifted the oracle ratio 0.973 -> 0.975, a tenth had been used before),
then bushier ones with small leaves (16 leaves and 20 rows per leaf at rate 0.05; 15 leaves of 5
rows, L2 3, 80% of the columns per tree, at 0.02) for sharp interactions between columns.
Categorical columns split one category against the rest, each side with at least 200 rows and
smoothed (``cat_smooth``): LightGBM's many-category splits fitted noise in a 51-level column.
The regularised pair reached the tuned anchor on Telco; on interaction-heavy tables (a held-out
public dataset, and the synthetic look-alike in bench/quality) the bushy ones win, and selection
by log loss picks per dataset. From ``LIGHTGBM_BUDGET_ROWS`` training rows only the first
``LIGHTGBM_BUDGET_CONFIGS`` configurations are tried: each fit then costs minutes.
``fit_estimator`` fits any recipe on rows, early-stopping LightGBM on held-out rows when given.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, early_stopping

from churnguard.features.catalog import monotone_constraints
from churnguard.modeling.linear import make_logistic
from churnguard.modeling.model import Estimator, ModelKind

logger = logging.getLogger(__name__)

Recipe = tuple[str, ModelKind, dict[str, Any]]

LOGISTIC_C: tuple[float, ...] = (0.01, 0.1, 1.0)  # strongest regularisation first
LOGISTIC_MAX_ROWS = 200_000  # a seeded uniform sample beyond this: ~100 weights need no more
LIGHTGBM_MAX_ROWS = 500_000  # likewise for LightGBM (25k+ churned rows at a 5% churn rate)
LIGHTGBM_BASE: dict[str, Any] = {
    "objective": "binary",
    "n_estimators": 3000,  # an upper bound: early stopping picks the number of trees
    "learning_rate": 0.03,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "reg_lambda": 5.0,
    "max_cat_threshold": 1,  # one category against the rest per split
    "min_data_per_group": 200,
    "cat_smooth": 50.0,
    "deterministic": True,
    "force_col_wise": True,  # fixed (not auto-chosen) for determinism; faster than row-wise here
    # One thread: results then never depend on the machine, the saved booster predicts one row
    # without thread hand-offs, and a busy 2-core box does not stall in OpenMP spin-waits (2
    # threads ran 5x slower than 1 there while other jobs were running).
    "n_jobs": 1,
    "verbose": -1,
}
LIGHTGBM_SEARCH: tuple[dict[str, Any], ...] = (
    {"num_leaves": 4},  # rows per leaf: min_child_rows(events)
    {"num_leaves": 16},
    {"num_leaves": 16, "min_child_samples": 20, "reg_lambda": 1.0, "learning_rate": 0.05},
    {
        "num_leaves": 15,
        "min_child_samples": 5,
        "reg_lambda": 3.0,
        "colsample_bytree": 0.8,
        "learning_rate": 0.02,
    },
)
MIN_CHILD_SHARE = 0.2  # rows per leaf of the regularised configurations: this share of events
MIN_CHILD_RANGE = (20, 100)
LIGHTGBM_BUDGET_ROWS = 250_000
LIGHTGBM_BUDGET_CONFIGS = 2
LIGHTGBM_FAST_FROM_ROWS = 250_000
LIGHTGBM_FAST_RATE = 0.1
LIGHTGBM_MIN_TRAIN_EVENTS = 50
EARLY_STOPPING_ROUNDS = 150


def make_lightgbm(params: dict[str, Any], seed: int, rows: int = 0) -> LGBMClassifier:
    """A regularised, deterministic LightGBM classifier (no class weights, one thread).

    From LIGHTGBM_FAST_FROM_ROWS training rows the learning rate is LIGHTGBM_FAST_RATE: each tree
    then rests on plenty of data, and the small default rate would need thousands of trees.
    """
    rate = params.get("learning_rate", LIGHTGBM_BASE["learning_rate"])
    if rows >= LIGHTGBM_FAST_FROM_ROWS:
        rate = max(rate, LIGHTGBM_FAST_RATE)
    return LGBMClassifier(
        **{**LIGHTGBM_BASE, **params, "learning_rate": rate, "random_state": seed}
    )


def recipes(
    train_events: int, lightgbm_min_events: int = LIGHTGBM_MIN_TRAIN_EVENTS, rows: int = 0
) -> list[Recipe]:
    """Candidate recipes, simplest first; LightGBM only with enough training churn events, and
    only its first configurations from LIGHTGBM_BUDGET_ROWS training rows."""
    out: list[Recipe] = [(f"logistic C={c:g}", "logistic", {"C": c}) for c in LOGISTIC_C]
    if train_events >= lightgbm_min_events:
        search = LIGHTGBM_SEARCH
        if rows >= LIGHTGBM_BUDGET_ROWS:
            search = search[:LIGHTGBM_BUDGET_CONFIGS]
        leaf = {"min_child_samples": min_child_rows(train_events)}
        configs = [{**leaf, **g} for g in search]
        out += [(lightgbm_name(g), "lightgbm", g) for g in configs]
    else:
        logger.info(
            "LightGBM left out: %s training churn events < %s", train_events, lightgbm_min_events
        )
    return out


def min_child_rows(events: int) -> int:
    """Rows per leaf of the regularised LightGBM configurations: MIN_CHILD_SHARE of the churn
    events, within MIN_CHILD_RANGE (with few events, a leaf must still be able to hold some)."""
    low, high = MIN_CHILD_RANGE
    return int(np.clip(round(events * MIN_CHILD_SHARE), low, high))


def lightgbm_name(params: dict[str, Any]) -> str:
    """A LightGBM candidate's name: its leaves, rows per leaf, and learning rate when it is not
    the base one (so no two configurations of the search share a name)."""
    leaf = params.get("min_child_samples", LIGHTGBM_BASE["min_child_samples"])
    rate = params.get("learning_rate", LIGHTGBM_BASE["learning_rate"])
    name = f"lightgbm leaves={params['num_leaves']} min_child={leaf}"
    return name if rate == LIGHTGBM_BASE["learning_rate"] else f"{name} rate={rate:g}"


def fit_estimator(
    kind: ModelKind,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    X_val: pd.DataFrame | None,
    y_val: np.ndarray | None,
    categorical: Sequence[str],
    seed: int,
) -> tuple[Estimator, dict[str, Any]]:
    """Fit one recipe; returns the estimator and its effective params.

    LightGBM early-stops on (X_val, y_val) when given and records ``best_iteration``; without them
    it grows ``params["n_estimators"]`` trees.
    """
    params = {k: v for k, v in params.items() if k != "best_iteration"}
    if kind == "logistic":
        numeric = [c for c in X.columns if c not in categorical]
        pipe = make_logistic(numeric, list(categorical), params["C"])
        X, y = sample_rows(X, y, LOGISTIC_MAX_ROWS, seed)
        return pipe.fit(X, y), params
    clf = make_lightgbm(params, seed, len(X))
    monotone = monotone_constraints(list(X.columns))
    if any(monotone):  # each declared direction as a constraint: reasons then point that way
        clf.set_params(monotone_constraints=monotone)
    X, y = sample_rows(X, y, LIGHTGBM_MAX_ROWS, seed)
    if X_val is None or y_val is None:
        return clf.fit(X, y), params
    stop = early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)
    clf.fit(X, y, eval_X=(X_val,), eval_y=(y_val,), callbacks=[stop])
    return clf, {**params, "best_iteration": int(clf.best_iteration_)}


def raw_proba(estimator: Any, X: pd.DataFrame) -> np.ndarray:
    """The estimator's uncalibrated churn probability per row."""
    return np.asarray(estimator.predict_proba(X), dtype=np.float64)[:, 1]


def sample_rows(
    X: pd.DataFrame, y: np.ndarray, limit: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """At most limit rows, a seeded uniform sample in time order (so the base rate is kept)."""
    if len(X) <= limit:
        return X, y
    keep = np.sort(np.random.default_rng(seed).choice(len(X), limit, replace=False))
    return X.iloc[keep], y[keep]
