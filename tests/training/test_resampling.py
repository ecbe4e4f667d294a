"""Tests for training.resampling: the tested model learns only from labels known before the test."""

from __future__ import annotations

import numpy as np
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


def test_cross_validation_in_worker_processes_gives_the_same_folds() -> None:
    from functools import partial

    from churnguard.training.resampling import cross_validate
    from churnguard.training.table import FlatOptions, parse_label
    from churnguard.training.tablefit import fit_table_model
    from tests.factories import client_table

    table = client_table(300, seed=4)
    y = parse_label(table["churn"], "churn").astype(np.int64)
    rows = table.drop(columns=["customer_id", "churn"])
    options = FlatOptions(train=TrainOptions(n_boot=20), inner_folds=2)
    fit = partial(fit_table_model, options=options)
    alone, pooled = (cross_validate(rows, y, fit, 3, 1, options.train, workers=w) for w in (1, 2))
    pd.testing.assert_frame_equal(alone[0], pooled[0])
    np.testing.assert_array_equal(alone[1].p, pooled[1].p)
    assert len(alone[0]) == 3 and alone[0]["roc_auc"].notna().all()
