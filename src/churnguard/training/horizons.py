"""Training and out-of-time evaluation of the horizon model (``modeling.horizons``).

* **Person-periods.** Each labelled snapshot becomes one row per 30-day period k = 1..6 that it
  survives into: label 1 when the client churns in (as_of + 30(k-1), as_of + 30k], rows after the
  churn dropped, a period whose labels are censored dropped. The labels are ``build_labels`` at
  horizons 30, 60, ..., 180 days (the one churn definition), so P(within 90 days) from the hazards
  estimates exactly what the 90-day model's label says.
* **Windows.** The snapshots whose longest horizon is labelled are split out of time with a gap
  of the longest horizon (``split_dates``, 180 days): the hazard model is fitted on training
  person-periods that end by the first validation date, early-stopped and Platt-calibrated on the
  validation snapshots' periods, and evaluated at every horizon on the test snapshots. Every
  horizon is so evaluated on the same snapshots, none of whose labels the model saw.
* **Cost at scale.** From ``FAST_FROM_ROWS`` training person-periods the learning rate doubles,
  and beyond ``MAX_TRAIN_ROWS`` the model is fitted on every period of a seeded share of the
  clients (validation keeps all of them). Both leave the 1,000- to 20,000-client books (under a
  million training person-periods) as they were; the 100,000-client book's horizon model had
  taken 535 s CPU of its 978 s training (bench/quality/README.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from churnguard.domain.churn import build_labels
from churnguard.features.catalog import monotone_constraints
from churnguard.modeling.horizons import PERIOD_DAYS, HorizonModel, platt_transform
from churnguard.modeling.model import ChurnModel, align_inputs
from churnguard.training.dataset import (
    Dataset,
    NotEnoughDataError,
    Split,
    categories,
    split_dates,
)

logger = logging.getLogger(__name__)

PERIODS = 6  # 180 days
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    # One thread, as the churn model's recipes (modeling.recipes): on the busy 2-core VM two
    # threads cost 23.5 s CPU and 110 s wall for the 1,000-client demo's fit against 1.3 s and
    # 8 s with one, for the same 44 trees (OpenMP spin-waits). Fixed column-wise histograms and
    # deterministic sums so the model never depends on the machine.
    "num_threads": 1,
    "force_col_wise": True,
    "deterministic": True,
}
ROUNDS, STOPPING = 600, 30
# Cost at scale. From FAST_FROM_ROWS training person-periods the learning rate is FAST_RATE (each
# tree rests on plenty of rows; at 0.05 the 100,000-client demo grew 534 of the 600 trees), and
# beyond MAX_TRAIN_ROWS a seeded sample of clients is fitted on (all periods of a kept client).
FAST_FROM_ROWS = 1_000_000
FAST_RATE = 0.1
MAX_TRAIN_ROWS = 2_000_000


@dataclass(frozen=True)
class PersonPeriods:
    """Person-period rows: which snapshot (row of the dataset), which period, churned in it."""

    row: np.ndarray
    period: np.ndarray
    churned: np.ndarray
    period_end: np.ndarray  # as_of + 30 * period, datetime64[s]


def input_matrix(
    features: pd.DataFrame, names: list[str], cats: dict[str, list[str]]
) -> np.ndarray:
    """Float64 inputs in the churn model's layout: categoricals as training codes, missing NaN."""
    aligned = align_inputs(features, names, cats)
    X = np.empty(aligned.shape)
    for j, name in enumerate(names):
        col = aligned[name]
        if name in cats:
            codes = col.cat.codes.to_numpy()
            X[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            X[:, j] = col.to_numpy(np.float64)
    return X


def period_labels(ds: Dataset, periods: int = PERIODS, grace_days: int = 30) -> pd.DataFrame:
    """churned_k per dataset row for k = 1..periods (NA when censored), from build_labels."""
    keys = ds.labels[["client_id", "as_of"]]
    out = keys.copy()
    for k in range(1, periods + 1):
        lab = build_labels(ds.data, ds.dates, k * PERIOD_DAYS, grace_days, ds.observed_until)
        merged = keys.merge(lab[["client_id", "as_of", "churned"]], how="left")
        out[f"churned_{k}"] = merged["churned"].to_numpy()
    return out


def person_periods(labels: pd.DataFrame, periods: int = PERIODS) -> PersonPeriods:
    """Expand period labels (``period_labels``) into person-period rows (module docstring)."""
    rows, ks, ys = [], [], []
    before = np.zeros(len(labels), bool)  # churned in an earlier period
    for k in range(1, periods + 1):
        cum = labels[f"churned_{k}"]
        known = cum.notna().to_numpy()
        now = cum.fillna(0).to_numpy().astype(bool)
        keep = known & ~before
        rows.append(np.flatnonzero(keep))
        ks.append(np.full(keep.sum(), k))
        ys.append((now & ~before)[keep].astype(np.int8))
        before = before | now
    row, period = np.concatenate(rows), np.concatenate(ks)
    as_of = labels["as_of"].to_numpy("datetime64[s]")[row]
    end = as_of + (period * PERIOD_DAYS).astype("timedelta64[D]")
    return PersonPeriods(row, period, np.concatenate(ys), end)


def horizon_split(ds: Dataset, labels: pd.DataFrame, periods: int = PERIODS) -> Split:
    """Out-of-time split of the snapshots whose longest horizon is labelled."""
    dates = labels.loc[labels[f"churned_{periods}"].notna(), "as_of"].drop_duplicates()
    return split_dates(pd.DatetimeIndex(dates), periods * PERIOD_DAYS, min_train_periods=3)


def fit_horizon_model(
    X: np.ndarray,
    pp: PersonPeriods,
    labels: pd.DataFrame,
    split: Split,
    names: list[str],
    seed: int,
) -> HorizonModel:
    """Fit on training periods, early-stop and calibrate on the validation snapshots' periods."""
    as_of = labels["as_of"].to_numpy("datetime64[s]")[pp.row]
    val_start = split.validation[0].to_datetime64().astype("datetime64[s]")
    val_dates = split.validation.tz_localize(None).to_numpy("datetime64[s]")
    val = np.isin(as_of, val_dates)
    clients = labels["client_id"].to_numpy()[pp.row]
    train = _sample_clients(pp.period_end <= val_start, clients, MAX_TRAIN_ROWS, seed)
    constraints = [*monotone_constraints(names), 0]
    cat_idx = [j for j in range(X.shape[1]) if _is_categorical(names[j], labels)]
    params = {**PARAMS, "seed": seed, "monotone_constraints": constraints}
    if train.sum() >= FAST_FROM_ROWS:
        params["learning_rate"] = max(params["learning_rate"], FAST_RATE)
    rows_val = _stack(X, pp, val)
    dtrain = lgb.Dataset(
        _stack(X, pp, train), pp.churned[train], categorical_feature=cat_idx or "auto"
    )
    dval = lgb.Dataset(rows_val, pp.churned[val], reference=dtrain)
    booster = lgb.train(
        params,
        dtrain,
        ROUNDS,
        valid_sets=[dval],
        callbacks=[lgb.early_stopping(STOPPING, verbose=False)],
    )
    raw = np.asarray(booster.predict(rows_val, num_iteration=booster.best_iteration))
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    return HorizonModel(booster, int(pp.period.max()), _platt(raw, pp.churned[val]))


def _sample_clients(mask: np.ndarray, clients: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """mask, or beyond limit rows the rows of a seeded share of its clients (about limit rows)."""
    if mask.sum() <= limit:
        return mask
    codes, _ = pd.factorize(clients)  # integer codes: ids may be strings
    ids = np.unique(codes[mask])
    rng = np.random.default_rng(seed)
    kept = np.zeros(codes.max() + 1, bool)
    kept[rng.choice(ids, max(1, round(len(ids) * limit / mask.sum())), replace=False)] = True
    sample = mask & kept[codes]
    logger.info(
        "horizon model: fitted on %s of %s clients (%s of %s training person-periods)",
        kept.sum(),
        len(ids),
        sample.sum(),
        mask.sum(),
    )
    return sample


def _stack(X: np.ndarray, pp: PersonPeriods, mask: np.ndarray) -> np.ndarray:
    """The masked person-periods' inputs: the snapshot's row plus the period, built in place
    (no copy of every person-period's rows first: 5 million events made that 0.5 GB)."""
    rows = pp.row[mask]
    out = np.empty((len(rows), X.shape[1] + 1))
    np.take(X, rows, axis=0, out=out[:, :-1], mode="clip")  # rows are valid: clip, unbuffered
    out[:, -1] = pp.period[mask]
    return out


def _is_categorical(name: str, labels: pd.DataFrame) -> bool:
    return bool(labels.attrs.get("categorical", {}).get(name, False))


def _platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic regression of the label on logit(raw): (slope, intercept)."""
    q = np.clip(raw, 1e-12, 1 - 1e-12)
    z = np.log(q / (1 - q)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6).fit(z, y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


@dataclass(frozen=True)
class HorizonFit:
    """A fitted horizon model with the data it was judged on."""

    model: HorizonModel
    split: Split
    labels: pd.DataFrame  # period labels of every dataset row
    X: np.ndarray  # inputs of every dataset row


def train_horizons(ds: Dataset, seed: int = 7, grace_days: int = 30) -> HorizonFit:
    """Period labels, person-periods, the split and the fitted model for one dataset."""
    names, cats = list(ds.feature_set.names), categories(ds)
    X = input_matrix(ds.features, names, cats)
    labels = period_labels(ds, PERIODS, grace_days)
    labels.attrs["categorical"] = {n: True for n in cats}
    split = horizon_split(ds, labels)
    pp = person_periods(labels)
    model = fit_horizon_model(X, pp, labels, split, names, seed)
    logger.info("horizon model: %s trees, platt %s", model.booster.num_trees(), model.platt)
    return HorizonFit(model, split, labels, X)


def attach_horizons(
    model: ChurnModel, ds: Dataset, seed: int = 7, grace_days: int = 30
) -> ChurnModel:
    """The model with a horizon model over its inputs, or unchanged when history is too short."""
    if list(model.feature_names) != list(ds.feature_set.names):
        return model
    try:
        fit = train_horizons(ds, seed, grace_days)
    except NotEnoughDataError as exc:
        logger.warning("no risk over several horizons: %s", exc)
        return model
    return replace(model, horizons=fit.model)


__all__ = ["HorizonFit", "attach_horizons", "input_matrix", "platt_transform", "train_horizons"]
