"""Fixtures of the Spark tests: one local Spark session (local[2]) for all of them, the demo
business written as Parquet, and a scorer.

Without Java or pyspark the tests skip, saying why; with CHURNGUARD_TEST_SPARK set (CI) they
must run, so a missing runtime fails them instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.scorer import Scorer
from churnguard.spark.session import PANDAS_WARNING
from churnguard.synth.business import write_demo_data
from churnguard.training.dataset import Dataset
from churnguard.training.horizons import attach_horizons
from tests.conftest import SMALL
from tests.factories import PARAMS, ModelFactory

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JDBC_JAR = Path("/usr/share/java/postgresql.jar")  # Debian's libpostgresql-jdbc-java
LOCAL = [
    "spark.ui.enabled=false",
    "spark.sql.shuffle.partitions=4",
    "spark.default.parallelism=2",
    "spark.driver.memory=1g",
    *([f"spark.jars={JDBC_JAR}"] if JDBC_JAR.exists() else []),  # tests/spark/test_jdbc.py
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """pyspark 4.3's own warnings under pandas 3 (its conversions, not churnguard's code)."""
    for item in items:
        if "tests/spark/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.filterwarnings(f"ignore:{PANDAS_WARNING}:FutureWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"))


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark (2 cores) for every Spark test: starting one costs 10-40 s."""
    from churnguard.spark.session import SparkUnavailableError, check_spark, start_session

    try:
        check_spark()
    except SparkUnavailableError as exc:
        if os.environ.get("CHURNGUARD_TEST_SPARK"):
            pytest.fail(f"CHURNGUARD_TEST_SPARK is set but {exc}")
        pytest.skip(str(exc))
    session = start_session("local[2]", LOCAL, app_name="churnguard-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' demo business (tests/conftest.SMALL) written as Parquet tables."""
    out = tmp_path_factory.mktemp("parquet-demo")
    write_demo_data(out, fmt="parquet", **SMALL)
    return out


@pytest.fixture(scope="session", params=["lightgbm", "horizons"])
def scorer(request: pytest.FixtureRequest, make_model: ModelFactory, dataset: Dataset) -> Scorer:
    """A LightGBM scorer, with and without the risk curve over several horizons."""
    model = make_model("lightgbm", PARAMS["lightgbm"])
    if request.param == "horizons":
        model = attach_horizons(model, dataset)
    return Scorer(model, "1", load_playbook(feature_set=model.feature_set))
