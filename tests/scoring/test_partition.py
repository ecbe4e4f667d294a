"""Tests for scoring.partition: the columnar scores are Scorer.score_data's, field for field, and
a batch run writes the same rows on one process as on several."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from churnguard.domain.contract import CRMData
from churnguard.features.records import records_model
from churnguard.scoring import batch
from churnguard.scoring.batch import format_summary, score_to_store
from churnguard.scoring.partition import ScoreColumns, score_partition
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.score import score_as_of
from churnguard.scoring.scorer import Scorer
from churnguard.store.columns import digest_format
from churnguard.store.database import to_json
from churnguard.store.scores import ScoreStore
from churnguard.training.dataset import Dataset
from churnguard.training.horizons import attach_horizons
from tests.factories import PARAMS, ModelFactory, records_body, stored_rows


@pytest.fixture(scope="module", params=["lightgbm", "logistic", "horizons"])
def scorer(request: pytest.FixtureRequest, make_model: ModelFactory, dataset: Dataset) -> Scorer:
    kind = "lightgbm" if request.param == "horizons" else request.param
    model = make_model(kind, PARAMS[kind])
    if request.param == "horizons":
        model = attach_horizons(model, dataset)
    return Scorer(model, "1", load_playbook(feature_set=model.feature_set))


def _stored_form(columns: ScoreColumns) -> list[dict[str, Any]]:
    rows = columns.rows
    return [
        {name: getattr(rows, name)[i] for name in ("client_id", "probability", "band",
         "revenue_at_risk", "monthly_value", "account_manager", "segment", "client_name",
         "feature_digest", "drivers", "actions", "change", "curve")}
        for i in range(len(rows))
    ]  # fmt: skip


@pytest.mark.parametrize(("drivers", "explain_from"), [(True, 0.0), (True, 0.2), (False, 0.0)])
def test_columns_are_the_score_objects_records_field_for_field(
    scorer: Scorer, data: CRMData, as_of: pd.Timestamp, drivers: bool, explain_from: float
) -> None:
    before = score_as_of(as_of - pd.Timedelta(days=30))
    previous = {s.client_id: s for s in scorer.score_data(data, before, drivers=False)[::2]}
    summaries: Any = previous  # ClientScore has every field "what changed" reads
    objects = scorer.score_data(data, as_of, drivers, False, explain_from, summaries)
    columns = score_partition(data, scorer, as_of, drivers, explain_from, summaries)
    expected = []
    for s in objects:
        r = s.to_record()
        expected.append(
            {
                "client_id": r.client_id, "probability": r.probability, "band": r.band,
                "revenue_at_risk": r.revenue_at_risk, "monthly_value": r.monthly_value,
                "account_manager": r.account_manager, "segment": r.segment,
                "client_name": r.client_name, "feature_digest": r.feature_digest,
                "drivers": to_json(r.drivers), "actions": to_json(r.actions),
                "change": to_json(r.change), "curve": to_json(r.curve),
            }
        )  # fmt: skip
    assert _stored_form(columns) == expected  # exactly: the same floats, the same JSON text
    assert columns.rows.as_of == objects[0].as_of and columns.rows.model_version == "1"
    assert columns.explained.tolist() == [
        drivers and s.probability >= explain_from for s in objects
    ]
    assert any(s.drivers for s in objects) == drivers
    assert any(c != '{"direction":"new"}' for c in columns.rows.change)
    frame = columns.frame()
    assert len(frame) == len(objects) and frame["client_id"].tolist() == columns.rows.client_id


def test_the_api_path_and_a_partition_give_each_client_the_same_feature_digest(
    scorer: Scorer, data: CRMData, as_of: pd.Timestamp
) -> None:
    columns = score_partition(data, scorer, as_of, drivers=False)
    digests = dict(zip(columns.rows.client_id, columns.rows.feature_digest, strict=True))
    Records = records_model(max_rows=5000)
    for client_id in columns.rows.client_id[:: max(1, len(columns) // 12)]:
        records = Records.model_validate(records_body(data, client_id))
        record = scorer.score_records(records, as_of.to_pydatetime()).to_record()
        assert record.feature_digest == digests[client_id], client_id
        assert digest_format(record.feature_digest) == "f64"


def test_predicting_in_parts_on_threads_gives_the_same_bits(
    scorer: Scorer, data: CRMData, as_of: pd.Timestamp
) -> None:
    features = scorer.features_at(data, as_of)
    whole = scorer.predict(features)
    for threads in (2, 3, len(features) + 5):
        assert scorer.predict(features, threads).tolist() == whole.tolist()


def test_batch_runs_write_the_same_rows_on_one_process_and_on_two(
    scorer: Scorer,
    data: CRMData,
    as_of: pd.Timestamp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch, "MIN_CHUNK", 10)  # several chunks of clients, of several sizes
    day_before = as_of - pd.Timedelta(days=1)
    stores, summaries = [], []
    for workers in (1, 2):
        store = ScoreStore(f"sqlite:///{tmp_path / f'{workers}.db'}").create()
        score_to_store(data, scorer, store, day_before, False, drivers=False, workers=workers)
        summaries.append(
            score_to_store(data, scorer, store, as_of, False, explain_from=0.1, workers=workers)
        )
        stores.append(store)
    serial, parallel = summaries
    assert (serial.workers, parallel.workers) == (1, 2)
    assert (serial.n_scored, serial.n_explained, serial.by_band, serial.top) == (
        parallel.n_scored, parallel.n_explained, parallel.by_band, parallel.top,
    )  # fmt: skip
    assert serial.revenue_at_risk == parallel.revenue_at_risk
    assert 0 < serial.n_explained < serial.n_scored
    for name, leave_out in [("scores", ("id", "created_at")), ("score_audit", ("id", "scored_at"))]:
        one, two = (stored_rows(store, name, leave_out) for store in stores)
        assert one == two and len(one) == 2 * serial.n_scored
    text = format_summary(serial)
    assert f"Scored {serial.n_scored:,} clients" in text
    left = serial.n_scored - serial.n_explained
    assert f"not for {left:,} scored below 0.1 (--explain-from)" in text


def test_a_run_that_fails_while_its_pool_starts_writes_nothing_and_leaves_no_process(
    scorer: Scorer,
    data: CRMData,
    as_of: pd.Timestamp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the pool starts in a thread beside the features: a failure there must still shut it down
    def broken(*_: Any) -> None:
        raise RuntimeError("the features failed")

    store = ScoreStore(f"sqlite:///{tmp_path / 'broken.db'}").create()
    monkeypatch.setattr(Scorer, "features_at", broken)
    with pytest.raises(RuntimeError, match="the features failed"):
        score_to_store(data, scorer, store, as_of, False, workers=2)
    assert multiprocessing.active_children() == []
    assert stored_rows(store, "scores", ("id",)) == []


def test_a_scores_only_summary_says_there_are_no_drivers(
    scorer: Scorer, data: CRMData, as_of: pd.Timestamp, tmp_path: Path
) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}").create()
    summary = score_to_store(data, scorer, store, as_of, progress=False, drivers=False)
    assert summary.n_explained == 0 and summary.workers == 1
    assert all(t.reason is None for t in summary.top)
    assert "Drivers and actions: none (scores only, --no-drivers)" in format_summary(summary)
    assert sum(summary.by_band.values()) == summary.n_scored > 0


def test_chunks_of_a_pool_cover_every_client_once_and_shrink_towards_the_end() -> None:
    for n, workers in [(0, 2), (1, 2), (999, 2), (65_694, 2), (100_000, 8)]:
        bounds = batch._chunk_bounds(n, workers)
        assert [start for start, _ in bounds] == [0, *(stop for _, stop in bounds)][: len(bounds)]
        assert (bounds[-1][1] if bounds else 0) == n
        sizes = [stop - start for start, stop in bounds]
        assert sizes == sorted(sizes, reverse=True)
        assert all(size <= batch.CHUNK_ROWS for size in sizes)
        assert all(size >= batch.MIN_CHUNK for size in sizes[:-1])
