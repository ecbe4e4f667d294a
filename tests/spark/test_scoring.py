"""Tests for spark.scoring: on a local Spark the scores equal one machine's, bit for bit."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from churnguard.domain.churn import observation_end
from churnguard.domain.coverage import default_as_of, scoring_coverage
from churnguard.domain.data import load_crm
from churnguard.domain.mapping import Mapping
from churnguard.scoring.batch import score_to_store
from churnguard.scoring.partition import score_partition
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.scorer import Scorer
from churnguard.spark.scoring import checked_scores, score_frame, score_to_parquet
from churnguard.spark.tables import read_sources
from churnguard.store.runs import ScoringRun, latest_runs, record_run
from churnguard.store.scores import ScoreStore
from tests.factories import BACKENDS, PARAMS, ModelFactory, open_store, stored_rows


def test_spark_scores_equal_one_machines_bit_for_bit(
    spark, parquet_dir: Path, scorer: Scorer
) -> None:
    data, _ = load_crm(parquet_dir)
    as_of = observation_end(data)
    expected = score_partition(data, scorer, as_of).frame()
    tables = read_sources(spark, str(parquet_dir), Mapping())
    scores = checked_scores(score_frame(spark, tables, Mapping(), scorer, as_of, buckets=3))
    got = scores.toPandas().sort_values("client_id", ignore_index=True)
    assert len(got) == len(expected) > 100
    for name in expected.columns.drop("as_of"):
        assert got[name].tolist() == expected[name].tolist(), name
    assert (pd.to_datetime(got["as_of"], utc=True) == as_of).all()


def test_a_logistic_champion_scores_equal_one_machines_bit_for_bit(
    spark, parquet_dir: Path, make_model: ModelFactory
) -> None:
    model = make_model("logistic", PARAMS["logistic"])  # its rows are predicted row-wise
    scorer = Scorer(model, "1", load_playbook(feature_set=model.feature_set))
    data, _ = load_crm(parquet_dir)
    as_of = observation_end(data)
    expected = score_partition(data, scorer, as_of, explain_from=0.2).frame()
    tables = read_sources(spark, str(parquet_dir), Mapping())
    frame = score_frame(spark, tables, Mapping(), scorer, as_of, explain_from=0.2, buckets=3)
    got = checked_scores(frame).toPandas().sort_values("client_id", ignore_index=True)
    assert len(got) == len(expected) > 100 and 0 < expected["explained"].sum() < len(expected)
    for name in expected.columns.drop("as_of"):
        assert got[name].tolist() == expected[name].tolist(), name


def test_a_spark_run_stores_and_summarises_what_a_batch_run_does(
    spark, parquet_dir: Path, scorer: Scorer, tmp_path: Path
) -> None:
    data, _ = load_crm(parquet_dir)
    as_of = observation_end(data)
    before = as_of - pd.Timedelta(days=30)
    stores, summaries = [], []
    for engine in ("local", "spark", "parquet only"):
        store = ScoreStore(f"sqlite:///{tmp_path / f'{engine}.db'}").create()
        if engine == "local":
            score_to_store(data, scorer, store, before, False, drivers=False, workers=1)
            summary = score_to_store(data, scorer, store, as_of, False, explain_from=0.1, workers=1)
        else:
            out = str(tmp_path / f"{engine}.parquet")
            kept = store if engine == "spark" else None
            run = partial(score_to_parquet, spark, str(parquet_dir), Mapping(), scorer, store=kept)
            run(before, out, drivers=False)
            summary = run(as_of, out, explain_from=0.1).summary
        stores.append(store)
        summaries.append(summary)
    local, on_spark, parquet_only = summaries
    for other in (on_spark, parquet_only):
        assert (other.n_scored, other.n_explained, other.by_band, other.top) == (
            local.n_scored, local.n_explained, local.by_band, local.top,
        )  # fmt: skip
        assert other.revenue_at_risk == local.revenue_at_risk
    assert 0 < local.n_explained < local.n_scored and local.top[0].reason
    for name, leave_out in [("scores", ("id", "created_at")), ("score_audit", ("id", "scored_at"))]:
        one, two = (stored_rows(store, name, leave_out) for store in stores[:2])
        assert one == two  # "what changed" included
        assert len(one) > local.n_scored  # two runs: as_of and a month before
    assert stored_rows(stores[2], "scores", ()) == []  # without a store, nothing is stored


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_spark_run_without_a_date_scores_at_the_default_and_is_recorded(
    spark, parquet_dir: Path, scorer: Scorer, tmp_path: Path, backend: str
) -> None:
    data, _ = load_crm(parquet_dir)
    chosen = default_as_of(data)
    with open_store(backend, tmp_path) as store:
        run = score_to_parquet(
            spark, str(parquet_dir), Mapping(), scorer, None, str(tmp_path / "out"), store=store
        )
        assert (run.summary.as_of, run.note) == (chosen.as_of, chosen.note)
        expected = scoring_coverage(data, chosen.as_of)
        assert run.coverage == expected and expected.clients > expected.active > 0
        assert run.summary.n_scored == expected.active
        record = ScoringRun.of(
            run.coverage, model_version="1", n_scored=run.summary.n_scored,
            source=str(parquet_dir), started_at=datetime.now(UTC),
        )  # fmt: skip
        record_run(store, record)
        (stored,) = latest_runs(store)
        assert (stored.n_clients, stored.n_active, stored.skipped) == (
            expected.clients, expected.active, {k: n for k, n in expected.skipped.items() if n},
        )  # fmt: skip
        assert stored.complete


def test_the_default_date_on_spark_follows_contracts_that_stop_early(
    spark, parquet_dir: Path, tmp_path: Path
) -> None:
    from churnguard.spark.coverage import spark_default_as_of
    from churnguard.spark.tables import PartitionTables, pack_by_client

    for path in parquet_dir.glob("*.parquet"):
        shutil.copy(path, tmp_path / path.name)
    interactions = pd.read_parquet(tmp_path / "interactions.parquet")
    late = interactions.iloc[[0]].copy()
    late["occurred_at"] = interactions["occurred_at"].max() + pd.Timedelta(days=60)
    pd.concat([interactions, late]).to_parquet(tmp_path / "interactions.parquet", index=False)
    data, _ = load_crm(tmp_path)
    expected = default_as_of(data)
    assert expected.note  # the contracts stop 60 days before the activity
    tables = read_sources(spark, str(tmp_path), Mapping())
    layout = PartitionTables(tables.names, tables.schemas, Mapping())
    packed = pack_by_client(tables, Mapping(), 3)
    assert spark_default_as_of(packed, layout, 3) == expected
