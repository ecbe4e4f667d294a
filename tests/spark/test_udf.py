"""The registered model scores a Spark DataFrame through ``mlflow.pyfunc.spark_udf``, for teams
with their own Spark jobs: the same probabilities as the pyfunc itself."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np

from churnguard.config import Settings
from churnguard.modeling.registry import Registry
from churnguard.training.dataset import Dataset
from tests.factories import PARAMS, ModelFactory

NAME = "spark-udf-test"  # its own registered model: the aliases of `churnguard` are not touched


def test_spark_udf_scores_like_the_pyfunc(
    spark, store: Path, make_model: ModelFactory, dataset: Dataset
) -> None:
    from pyspark.sql import functions as sf

    model = make_model("lightgbm", PARAMS["lightgbm"])
    features = dataset.features.tail(200).reset_index(drop=True)
    inputs = features[model.feature_names].astype({c: object for c in model.categories})
    registry = Registry(Settings().tracking_uri, store / "mlartifacts", model_name=NAME)
    with registry.start_run("spark-udf-tests") as run:
        version = registry.log_model(run, model, inputs.head(5))
    uri = f"models:/{NAME}/{version}"
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    frame = spark.createDataFrame(inputs.assign(row=np.arange(len(inputs))))
    scored = frame.withColumn("p", udf(*[sf.col(c) for c in model.feature_names]))
    got = scored.orderBy("row").select("p").toPandas()["p"].to_numpy()
    expected = mlflow.pyfunc.load_model(uri).predict(inputs)
    np.testing.assert_array_equal(got, expected)
    assert len(got) == 200 and not np.isnan(got).any()
