"""Fixtures of the scoring tests: the demo's CRM data and the as_of it is scored at."""

from __future__ import annotations

import pandas as pd
import pytest

from churnguard.domain.churn import observation_end
from churnguard.domain.contract import CRMData
from churnguard.training.train import Dataset


@pytest.fixture(scope="module")
def data(dataset: Dataset) -> CRMData:
    return dataset.data


@pytest.fixture(scope="module")
def as_of(data: CRMData) -> pd.Timestamp:
    return observation_end(data)
