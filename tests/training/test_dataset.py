"""Tests for churnguard.training.dataset: labelled snapshots, the split in time, too little data."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from churnguard.training.dataset import (
    Dataset,
    NotEnoughDataError,
    TrainOptions,
    check_enough_data,
    split_dates,
)

HORIZON = pd.Timedelta(days=90)


@pytest.mark.parametrize("horizon", [30, 90, 180])
def test_split_windows_never_overlap_and_the_gap_is_tight(horizon: int) -> None:
    dates = pd.date_range("2021-01-01", periods=40, freq="MS", tz="UTC")
    split = split_dates(dates, horizon, test_periods=3, val_periods=3)
    gap = pd.Timedelta(days=horizon)
    assert list(split.test) == list(dates[-3:])
    assert len(split.validation) == 3
    assert split.train[-1] + gap <= split.validation[0]
    assert split.validation[-1] + gap <= split.test[0]
    after_train = dates[dates > split.train[-1]][0]
    after_val = dates[dates > split.validation[-1]][0]
    assert after_train + gap > split.validation[0]  # the gap is no longer than it needs to be
    assert after_val + gap > split.test[0]
    assert split.train[0] == dates[0]


def test_split_with_too_few_dates_says_what_is_missing() -> None:
    dates = pd.date_range("2024-01-01", periods=8, freq="MS", tz="UTC")
    with pytest.raises(NotEnoughDataError, match="labelled monthly snapshot dates") as info:
        split_dates(dates, 90, min_train_periods=3)
    for option in ("--horizon, now 90 days", "--val-months 3", "--test-months 3"):
        assert option in str(info.value)  # every option that helps is named


def test_features_and_labels_stay_inside_the_labelled_history(dataset: Dataset) -> None:
    labels = dataset.labels
    assert labels["churned"].isin([0, 1]).all()
    assert (labels["as_of"] + HORIZON + pd.Timedelta(days=30) < dataset.observed_until).all()
    assert (labels["as_of"] >= dataset.history_start).all()
    assert (labels["churn_date"].dropna() > dataset.history_start).all()
    assert dataset.features[["client_id", "as_of"]].equals(labels[["client_id", "as_of"]])


def test_no_churn_in_the_test_window_is_refused(dataset: Dataset) -> None:
    split = split_dates(dataset.dates, 90)
    churned = dataset.labels["churned"].where(~dataset.rows(split.test), 0)
    quiet = replace(dataset, labels=dataset.labels.assign(churned=churned))
    with pytest.raises(NotEnoughDataError, match=r"test window .* has no churned snapshot"):
        check_enough_data(quiet, split, TrainOptions())
    with pytest.raises(NotEnoughDataError, match="needs at least 1000"):
        check_enough_data(dataset, split, TrainOptions(min_train_events=1000))
