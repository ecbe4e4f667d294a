"""Risk over several horizons in scores: non-decreasing for every client, the same by batch and API,
and the renewal only for a contract ending within the longest horizon."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from churnguard.domain.contract import CRMData
from churnguard.features.records import records_model
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.score import ClientScore
from churnguard.scoring.scorer import Scorer
from churnguard.service.schemas import ScorePublic
from churnguard.store.scores import ScoreStore
from churnguard.training.dataset import Dataset
from churnguard.training.horizons import attach_horizons
from tests.factories import PARAMS, ModelFactory, records_body

Records = records_model(max_rows=5000)


@pytest.fixture(scope="module")
def scorer(make_model: ModelFactory, dataset: Dataset) -> Scorer:
    model = attach_horizons(make_model("lightgbm", PARAMS["lightgbm"]), dataset)
    assert model.horizons is not None
    return Scorer(model, "1", load_playbook(feature_set=model.feature_set))


@pytest.fixture(scope="module")
def batch(scorer: Scorer, data: CRMData, as_of: pd.Timestamp) -> list[ClientScore]:
    return scorer.score_data(data, as_of, drivers=False)


def test_every_clients_horizons_never_decrease(batch: list[ClientScore]) -> None:
    for s in batch:
        days, p = zip(*s.curve.horizons, strict=True)
        assert days == (30, 90, 180)
        assert (np.diff(p) >= 0).all(), s.client_id


def test_renewal_is_the_curve_at_a_contract_end_within_180_days(
    batch: list[ClientScore], as_of: pd.Timestamp
) -> None:
    renewals = [s for s in batch if s.curve.renewal is not None]
    assert renewals
    for s in renewals:
        r = s.curve.renewal
        assert r is not None
        days = (pd.Timestamp(r.date) - as_of.tz_localize(None).normalize()).days
        assert 0 <= days <= 180
        p30, _, p180 = (p for _, p in s.curve.horizons)
        assert (p30 <= r.probability or days < 30) and r.probability <= p180 + 1e-12


def test_the_api_path_gives_the_batch_curve(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    ranked = sorted(batch, key=lambda s: -s.probability)
    for expected in ranked[:5] + ranked[5 :: max(1, len(ranked) // 8)]:
        records = Records.model_validate(records_body(data, expected.client_id))
        got = scorer.score_records(records, as_of.to_pydatetime())
        assert [d for d, _ in got.curve.horizons] == [d for d, _ in expected.curve.horizons]
        np.testing.assert_allclose(
            [p for _, p in got.curve.horizons], [p for _, p in expected.curve.horizons], atol=1e-12
        )
        assert (got.curve.renewal is None) == (expected.curve.renewal is None)
        if got.curve.renewal and expected.curve.renewal:
            assert got.curve.renewal.date == expected.curve.renewal.date
            assert abs(got.curve.renewal.probability - expected.curve.renewal.probability) < 1e-12
        public = ScorePublic.of(got.to_record())
        assert [h.probability for h in public.horizons] == [p for _, p in got.curve.horizons]


def test_the_store_keeps_the_curve_and_the_api_shows_it(
    batch: list[ClientScore], tmp_path: Path
) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}").create()
    chosen = next(s for s in batch if s.curve.renewal is not None)
    store.save_scores([chosen.to_record()])
    stored = store.latest_score(chosen.client_id)
    assert stored is not None
    public = ScorePublic.of(stored)
    assert [(h.days, h.probability) for h in public.horizons] == list(chosen.curve.horizons)
    assert public.renewal is not None and chosen.curve.renewal is not None
    assert public.renewal.date == chosen.curve.renewal.date
    assert public.renewal.probability == chosen.curve.renewal.probability


def test_a_store_made_before_curves_gets_the_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    ScoreStore(url).create()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE scores DROP COLUMN curve")
    ScoreStore(url).create()
    assert "curve" in {c["name"] for c in sa.inspect(engine).get_columns("scores")}
