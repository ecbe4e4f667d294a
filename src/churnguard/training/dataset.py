"""CRM histories as training data: monthly labelled snapshots, their features, the split in time.

* **History start.** Labelled snapshots start at the last snapshot date on or before the first
  churn seen in the data. Before any client is ever seen to leave, an export is usually back-filled
  history (clients that left back then are missing), and those months would teach the model that
  nobody churns. The rows dropped are logged and the start is a run parameter.
* **Out-of-time split.** On the sorted labelled as_of dates: test = the last ``test_periods``
  (3 months), validation = the ``val_periods`` (3) latest dates whose label window ends by the
  first test date (``as_of + horizon <= test start``), train = every date whose window ends by the
  first validation date. So label windows of train, validation and test never overlap.
* **Too little data.** Fewer than ``min_train_events`` distinct churn events in training, or no
  churn in the validation or test window, raises ``NotEnoughDataError`` saying what to do.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnguard.domain.churn import build_labels, observation_end, snapshot_dates
from churnguard.domain.contract import CRMData
from churnguard.features.catalog import FeatureSet, feature_set_for
from churnguard.features.engine import compute_features

logger = logging.getLogger(__name__)

# compute_features' signature: how a dataset's features are computed (on Spark: spark.backfill)
FeatureFn = Callable[[CRMData, pd.DataFrame, FeatureSet], pd.DataFrame]


class NotEnoughDataError(ValueError):
    """The data holds too little labelled history for an honest model."""


@dataclass(frozen=True)
class TrainOptions:
    """What a training run does; defaults are the documented choices (module docstring)."""

    horizon_days: int = 90
    grace_days: int = 30
    seed: int = 7
    experiment: str = "churnguard"
    test_periods: int = 3
    val_periods: int = 3
    min_train_periods: int = 3
    min_train_events: int = 10
    lightgbm_min_train_events: int = 50
    backtest_cutoffs: int = 4
    n_boot: int = 200
    gate_tolerance: float = 0.005
    source: str = ""  # where the data came from (a folder, or a URL without its password)


@dataclass(frozen=True)
class Split:
    """As_of dates of the train, validation and test windows."""

    train: pd.DatetimeIndex
    validation: pd.DatetimeIndex
    test: pd.DatetimeIndex

    def params(self) -> dict[str, str]:
        out = {}
        for name in ("train", "validation", "test"):
            dates = getattr(self, name)
            out[f"{name}_start"], out[f"{name}_end"] = day(dates[0]), day(dates[-1])
        return out


@dataclass(frozen=True)
class Dataset:
    """Labelled snapshots and their features, row-aligned."""

    data: CRMData
    feature_set: FeatureSet
    labels: pd.DataFrame  # client_id, as_of, churned (int), churn_date, monthly_value, ...
    features: pd.DataFrame  # client_id, as_of, then feature columns
    observed_until: pd.Timestamp
    history_start: pd.Timestamp
    compute: FeatureFn = compute_features  # features of other snapshots (the champion's, say)

    @property
    def dates(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.labels["as_of"].unique()).sort_values()

    def rows(self, dates: pd.DatetimeIndex) -> np.ndarray:
        """Boolean mask of the snapshots at the given as_of dates."""
        return self.labels["as_of"].isin(dates).to_numpy()

    def y(self, mask: np.ndarray) -> np.ndarray:
        return self.labels["churned"].to_numpy()[mask]

    def events(self, mask: np.ndarray) -> int:
        """Distinct churn events (client, churn date) among the snapshots."""
        rows = self.labels.loc[mask & (self.labels["churned"] == 1).to_numpy()]
        return len(rows[["client_id", "churn_date"]].drop_duplicates())

    def revenue(self, mask: np.ndarray) -> np.ndarray:
        """Annualised contract value at as_of: the revenue at stake per snapshot."""
        return 12 * self.labels["monthly_value"].to_numpy()[mask]


def build_dataset(
    data: CRMData,
    options: TrainOptions,
    observed_until: pd.Timestamp | None = None,
    feature_set: FeatureSet | None = None,
    compute: FeatureFn = compute_features,
) -> Dataset:
    """Monthly labelled snapshots (censored and pre-history dropped) with their features.

    ``observed_until``, ``feature_set`` and ``compute`` default to what ``data`` gives; the
    Spark backfill passes them when ``data`` holds clients and contracts only.
    """
    observed_until = observation_end(data) if observed_until is None else observed_until
    dates = snapshot_dates(data, "MS", observed_until)
    labels = build_labels(data, dates, options.horizon_days, options.grace_days, observed_until)
    labels = labels.loc[~labels["censored"]]
    if not (labels["churned"] == 1).any():
        raise NotEnoughDataError(
            "no churn at all in the labelled history: there is nothing to learn from. "
            "A churn is a client's last contract ending with no new one within "
            f"{options.grace_days} days, at least {options.horizon_days + options.grace_days} "
            "days before the end of the data; export a longer history, or shorten the horizon "
            f"(--horizon, now {options.horizon_days} days)."
        )
    start = _history_start(labels)
    dropped = int((labels["as_of"] < start).sum())
    if dropped:
        logger.info(
            "dropping %s snapshots before the first observed churn (%s)", dropped, day(start)
        )
    labels = labels.loc[labels["as_of"] >= start].reset_index(drop=True)
    labels = labels.assign(churned=labels["churned"].astype(np.int64))
    feature_set = feature_set or feature_set_for(data)
    features = compute(data, labels[["client_id", "as_of"]], feature_set)
    return Dataset(data, feature_set, labels, features, observed_until, start, compute)


def _history_start(labels: pd.DataFrame) -> pd.Timestamp:
    """The last snapshot date on or before the first churn in the labelled data."""
    first_churn = labels["churn_date"].min()
    dates = labels["as_of"].drop_duplicates().sort_values()
    return pd.Timestamp(dates[dates <= first_churn].max())


def split_dates(
    dates: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    horizon_days: int,
    test_periods: int = 3,
    val_periods: int = 3,
    min_train_periods: int = 1,
) -> Split:
    """Out-of-time split of as_of dates with one horizon between the windows (module docstring)."""
    ordered = pd.DatetimeIndex(sorted(set(dates)))
    gap = pd.Timedelta(days=horizon_days)
    test = ordered[-test_periods:] if len(ordered) >= test_periods else ordered[:0]
    validation = ordered[ordered + gap <= test[0]][-val_periods:] if len(test) else test
    train = ordered[ordered + gap <= validation[0]] if len(validation) else validation
    if len(test) < test_periods or len(validation) < val_periods or len(train) < min_train_periods:
        span = f"{day(ordered[0])} to {day(ordered[-1])}" if len(ordered) else "none"
        raise NotEnoughDataError(
            f"only {len(ordered)} labelled monthly snapshot dates ({span}): the out-of-time split "
            f"needs {min_train_periods}+ training months, a {horizon_days}-day gap, "
            f"{val_periods} validation months, another gap and {test_periods} test months. "
            f"Export a longer history, or ask for less: a shorter horizon (--horizon, now "
            f"{horizon_days} days: it sets both gaps and how much of the end of the data is "
            f"still unlabelled), fewer window months (--val-months {val_periods}, --test-months "
            f"{test_periods} now)."
        )
    return Split(train, validation, test)


def check_enough_data(ds: Dataset, split: Split, options: TrainOptions) -> None:
    """Raise NotEnoughDataError unless every window can support an honest model."""
    train_events = ds.events(ds.rows(split.train))
    if train_events < options.min_train_events:
        raise NotEnoughDataError(
            f"the training window ({span(split.train)}) holds {train_events} churn events; an "
            f"honest model needs at least {options.min_train_events}. Export a longer history or "
            "more clients, shorten the horizon (--horizon: shorter gaps leave more training "
            "months) or the validation/test windows (--val-months/--test-months)."
        )
    for name in ("validation", "test"):
        dates = getattr(split, name)
        if ds.y(ds.rows(dates)).sum() == 0:
            raise NotEnoughDataError(
                f"the {name} window ({span(dates)}) has no churned snapshot, so the model cannot "
                f"be {'calibrated' if name == 'validation' else 'evaluated'}. Widen it "
                "(--val-months/--test-months), shorten the horizon (--horizon) or wait for more "
                "history."
            )


def data_digest(data: CRMData) -> str:
    """sha256 over every table's column names, dtypes and values (row order matters)."""
    h = hashlib.sha256()
    for name, df in data.tables().items():
        h.update(f"{name}:{[(c, str(t)) for c, t in df.dtypes.items()]}".encode())
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def categories(ds: Dataset) -> dict[str, list[str]]:
    """Categories of each categorical feature over the labelled snapshots."""
    return {c: [str(v) for v in ds.features[c].cat.categories] for c in ds.feature_set.categorical}


def day(ts: Any) -> str:
    """A timestamp as YYYY-MM-DD."""
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def span(dates: pd.DatetimeIndex) -> str:
    """First..last date of a window."""
    return f"{day(dates[0])}..{day(dates[-1])}"
