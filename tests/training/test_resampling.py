"""Tests for training.resampling: the tested model learns only from labels known before the test."""

from __future__ import annotations

import pandas as pd

from churnguard.training.dataset import Dataset, TrainOptions, split_dates
from churnguard.training.resampling import before_test


def test_before_test_holds_train_gap_and_validation_but_no_label_from_the_test_window(
    dataset: Dataset,
) -> None:
    options = TrainOptions()
    split = split_dates(dataset.dates, options.horizon_days, 3, 3, 3)
    known = before_test(dataset, split, options.horizon_days)
    as_of = dataset.labels["as_of"]
    assert dataset.rows(split.train)[~known].sum() == 0  # train and validation are inside
    assert dataset.rows(split.validation)[~known].sum() == 0
    assert known.sum() > (dataset.rows(split.train) | dataset.rows(split.validation)).sum()
    label_ends = as_of[known] + pd.Timedelta(days=options.horizon_days)
    assert (label_ends <= split.test[0]).all()  # every label was known when the test opened
