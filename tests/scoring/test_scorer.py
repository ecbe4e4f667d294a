"""Tests for scoring.scorer: the API path and the batch path agree, contributions add up, drivers
and actions read right, and every score says what changed since the client's previous one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.domain.churn import active_clients
from churnguard.domain.contract import CRMData
from churnguard.features.records import records_model
from churnguard.modeling.model import ChurnModel
from churnguard.scoring.directions import SAFEST
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.score import ClientScore, score_as_of
from churnguard.scoring.scorer import RecordsError, Scorer
from churnguard.store.scores import ScoreStore, describe_change
from tests.factories import PARAMS, ModelFactory, records_body

Records = records_model(max_rows=5000)


@pytest.fixture(scope="module", params=["lightgbm", "logistic"])
def scorer(request: pytest.FixtureRequest, make_model: ModelFactory) -> Scorer:
    model = make_model(request.param, PARAMS[request.param])
    return Scorer(model, "1", load_playbook(feature_set=model.feature_set))


@pytest.fixture(scope="module")
def batch(scorer: Scorer, data: CRMData, as_of: pd.Timestamp) -> list[ClientScore]:
    return scorer.score_data(data, as_of)


def _some(scores: list[ClientScore], n: int = 12) -> list[ClientScore]:
    """The riskiest clients (the most drivers and actions) and an even spread of the rest."""
    ranked = sorted(scores, key=lambda s: -s.probability)
    return ranked[: n // 2] + ranked[n // 2 :: max(1, len(ranked) // n)][: n - n // 2]


# --- one client and many agree ------------------------------------------------------------------


def test_the_api_path_gives_the_batch_score(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    for expected in _some(batch):
        records = Records.model_validate(records_body(data, expected.client_id))
        got = scorer.score_records(records, as_of.to_pydatetime())
        assert abs(got.probability - expected.probability) <= 1e-9, expected.client_id
        assert got.features == expected.features
        assert [(d.feature, d.value, d.reason) for d in got.drivers] == [
            (d.feature, d.value, d.reason) for d in expected.drivers
        ]
        np.testing.assert_allclose(
            [d.contribution for d in got.drivers], [d.contribution for d in expected.drivers]
        )
        assert got.actions == expected.actions
        assert (got.band, got.monthly_value, got.as_of) == (
            expected.band,
            expected.monthly_value,
            expected.as_of,
        )
        assert (got.account_manager, got.segment, got.client_name) == (
            expected.account_manager,
            expected.segment,
            expected.client_name,
        )
        assert got.revenue_at_risk == pytest.approx(expected.revenue_at_risk, rel=1e-9)


def test_batch_scores_every_active_client_with_the_models_probability(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    assert [s.client_id for s in batch] == list(active_clients(data.contracts, as_of))
    features = scorer.features_at(data, as_of)
    np.testing.assert_allclose(
        [s.probability for s in batch], scorer.model.predict_proba(features), rtol=0, atol=1e-12
    )
    assert {s.band for s in batch} <= {"low", "medium", "high"} and len({s.band for s in batch}) > 1
    s = max(batch, key=lambda s: s.revenue_at_risk)
    assert s.revenue_at_risk == pytest.approx(s.probability * s.monthly_value * 12)
    assert s.monthly_value > 0 and s.as_of == as_of.to_pydatetime()


# --- contributions -----------------------------------------------------------------------------


def test_contributions_add_up_to_the_models_log_odds(
    scorer: Scorer, data: CRMData, as_of: pd.Timestamp
) -> None:
    model = scorer.model
    features = scorer.features_at(data, as_of)
    c = scorer.contributions(features)
    assert c.shape == (len(features), len(model.feature_names))
    assert (np.abs(c) > 1e-6).any(axis=0).sum() > 5  # several features move the score
    raw = model.raw_proba(features)
    if model.booster is not None:  # SHAP: contributions + the constant bias = the raw logit
        shap = model.booster.predict(scorer.matrix(features.head(1)), pred_contrib=True)
        bias = np.asarray(shap)[0, -1]
        np.testing.assert_allclose(c.sum(axis=1) + bias, np.log(raw / (1 - raw)), atol=1e-9)
    else:  # coefficient x transformed value: the decision function without the intercept
        decision = model.estimator.decision_function(model.inputs(features))
        intercept = model.estimator[-1].intercept_[0]
        np.testing.assert_allclose(c.sum(axis=1), decision - intercept, atol=1e-9)


def test_drivers_are_the_largest_risk_raising_contributions_with_reasons(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    features = scorer.features_at(data, as_of)
    c = scorer.contributions(features)
    column = {name: j for j, name in enumerate(scorer.names)}
    assert sum(len(s.drivers) for s in batch) > len(batch)
    for i, s in enumerate(batch):
        assert len(s.drivers) <= scorer.top_k
        contributions = [d.contribution for d in s.drivers]
        assert all(x > 0 for x in contributions)
        assert contributions == sorted(contributions, reverse=True)
        for d in s.drivers:
            assert d.reason and d.contribution == pytest.approx(c[i, column[d.feature]])
        if len(s.drivers) == scorer.top_k:  # nothing left out raised the risk more...
            others = [
                name
                for name, j in column.items()
                if name not in {d.feature for d in s.drivers}
                and s.features[name] is not None
                and c[i, j] > min(contributions) + 1e-12
            ]
            for name in others:  # ... unless it is no reason: context, a fact, the wrong way
                assert not _is_reason(scorer, features.iloc[[i]], name), (s.client_id, name)


def _is_reason(scorer: Scorer, row: pd.DataFrame, name: str) -> bool:
    """Whether a feature has a direction and, at the client's value, pushes risk up that way: the
    model (its own DataFrame path) scores the client lower with the value at its safest."""
    feature = next(f for f in scorer.model.feature_set.features if f.name == name)
    if feature.direction == "context" or feature.fact:
        return False
    safer = row.copy()
    safer[name] = -SAFEST if feature.direction == "more_risk" else SAFEST
    raw = scorer.model.raw_proba(pd.concat([row, safer]))
    return bool(raw[0] > raw[1])


def test_every_driver_pushes_risk_up_in_its_features_declared_direction(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    features = scorer.features_at(data, as_of)
    by_name = {f.name: f for f in scorer.model.feature_set.features}
    shown = [(i, d) for i, s in enumerate(batch) for d in s.drivers]
    assert len(shown) > len(batch) // 2
    for i, d in shown[:: max(1, len(shown) // 300)]:  # a spread of a few hundred
        assert by_name[d.feature].direction != "context" and not by_name[d.feature].fact
        assert _is_reason(scorer, features.iloc[[i]], d.feature), (batch[i].client_id, d)
    context = {f.name for f in by_name.values() if f.direction == "context" or f.fact}
    assert {"segment", "region", "industry", "days_to_contract_end"} <= context
    assert not any(d.feature in context for _, d in shown)


def test_actions_come_from_the_playbook_and_answer_the_drivers(
    scorer: Scorer, batch: list[ClientScore], tmp_path: Path, data: CRMData, as_of: pd.Timestamp
) -> None:
    known = {rule.action for rule in scorer.playbook.rules}
    answering = 0
    for s in batch:
        assert {a.action for a in s.actions} <= known and len(s.actions) <= 3
        feature_of = {d.reason: d.feature for d in s.drivers}
        for a, stored in zip(s.actions, s.to_record().actions, strict=True):
            assert (stored["action"], stored["reason"]) == (a.action, a.why)
            assert stored["feature"] == feature_of.get(a.why)
            answering += stored["feature"] is not None
    assert answering > 0  # some actions answer a driver, and the stored action says which
    own = tmp_path / "playbook.yaml"
    own.write_text(
        "rules:\n  - action: Send the quarterly value report\n    priority: 1\n"
        "    when: {monthly_value: {gte: 0}}\n"
    )
    custom = Scorer(scorer.model, "1", load_playbook(own, scorer.model.feature_set))
    scores = custom.score_data(data, as_of)
    assert {a.action for s in scores for a in s.actions} == {"Send the quarterly value report"}


def test_without_drivers_scores_carry_no_explanations_and_the_same_probabilities(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    plain = scorer.score_data(data, as_of, drivers=False)
    assert [s.probability for s in plain] == [s.probability for s in batch]
    assert not any(s.drivers or s.actions for s in plain)
    cut = 0.2
    some = scorer.score_data(data, as_of, explain_from=cut)
    for full, part in zip(batch, some, strict=True):
        expected = full.drivers if full.probability >= cut else []
        assert part.drivers == expected


def test_a_model_the_array_path_cannot_reproduce_is_refused(make_model: ModelFactory) -> None:
    model = make_model("lightgbm", PARAMS["lightgbm"])
    shuffled = {name: labels[::-1] for name, labels in model.categories.items()}
    broken = ChurnModel(
        model.feature_set,
        model.kind,
        model.estimator,
        model.calibrator,
        model.horizon_days,
        model.feature_names,
        shuffled,  # the booster still knows the training order: codes would mean other things
    )
    with pytest.raises(TypeError, match="differs from its predict_proba"):
        Scorer(broken, "x", load_playbook(feature_set=model.feature_set))


# --- what changed -------------------------------------------------------------------------------


def test_both_paths_say_what_changed_since_the_previous_stored_score(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp, tmp_path: Path
) -> None:
    assert all(s.change == {"direction": "new"} for s in batch)  # no previous scores given
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}").create()
    before = score_as_of(as_of - pd.Timedelta(days=30))
    store.save_scores([s.to_record() for s in scorer.score_data(data, before, drivers=False)])
    previous = store.previous_scores(score_as_of(as_of))
    later = scorer.score_data(data, as_of, drivers=False, previous=previous)
    for s in later:
        assert s.change == describe_change(previous.get(s.client_id), s.probability)
    assert {s.change.get("previous_as_of") for s in later} <= {before.isoformat(), None}
    assert any(s.change["direction"] != "new" for s in later)

    some = _some(later, 6)
    requests = [
        (Records.model_validate(records_body(data, s.client_id)), as_of.to_pydatetime())
        for s in some
    ]
    got = scorer.score_clients(requests, store)
    assert [s.client_id for s in got] == [s.client_id for s in some]
    for api, expected in zip(got, some, strict=True):
        assert api.change.keys() == expected.change.keys(), api.client_id
        assert api.change["direction"] == expected.change["direction"]
        assert api.change.get("previous_as_of") == expected.change.get("previous_as_of")
        assert api.change.get("delta", 0) == pytest.approx(
            expected.change.get("delta", 0), abs=1e-9
        )


def test_records_the_model_cannot_score_name_their_client(
    scorer: Scorer,
    data: CRMData,
    as_of: pd.Timestamp,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}").create()
    ids = list(active_clients(data.contracts, as_of))[:3]
    requests = [(Records.model_validate(records_body(data, i)), as_of.to_pydatetime()) for i in ids]
    score = scorer.score_records

    def refuse_the_second(records: object, when: object, previous: object = None) -> ClientScore:
        if records is requests[1][0]:
            raise ValueError("cannot score these records")
        return score(records, when, previous)  # type: ignore[arg-type]

    monkeypatch.setattr(scorer, "score_records", refuse_the_second)
    with pytest.raises(RecordsError, match="cannot score these records") as error:
        scorer.score_clients(requests, store)
    assert error.value.index == 1


def test_tree_contributions_are_lightgbms_and_fall_back_to_it_when_the_tables_disagree(
    make_model: ModelFactory,
    data: CRMData,
    as_of: pd.Timestamp,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from churnguard.modeling.treeshap import Explainer

    model = make_model("lightgbm", PARAMS["lightgbm"])
    assert model.booster is not None
    playbook = load_playbook(feature_set=model.feature_set)
    scorer = Scorer(model, "1", playbook)
    X = scorer.matrix(scorer.features_at(data, as_of))
    own = np.asarray(model.booster.predict(X, pred_contrib=True, num_threads=1))[:, :-1]
    assert scorer._explainer is not None  # the look-up tables compute them
    np.testing.assert_allclose(
        scorer.contributions(scorer.features_at(data, as_of)), own, atol=1e-12
    )
    wrong = Explainer.contributions
    monkeypatch.setattr(Explainer, "contributions", lambda self, X: wrong(self, X) + 1e-6)
    fallback = Scorer(model, "1", playbook)
    assert fallback._explainer is None
    assert "LightGBM computes them" in caplog.text
    assert np.array_equal(fallback.contributions(scorer.features_at(data, as_of)), own)


def test_drivers_from_the_reasons_contributions_alone_are_those_of_all_contributions(
    scorer: Scorer, data: CRMData, as_of: pd.Timestamp
) -> None:
    """The drivers' look-ups skip features that are never reasons; nothing else changes."""
    features = scorer.features_at(data, as_of)
    X = scorer.matrix(features)
    every = scorer._reasons(X, scorer._contributions(X, 1), 1)
    only = scorer.reason_contributions(X, 1)
    reasons = scorer._directions.reasons
    np.testing.assert_array_equal(only[:, reasons], every[:, reasons])
    assert (only[:, ~reasons] <= 0).all() and (every[:, ~reasons] <= 0).all()
    rows = scorer.feature_rows(features)
    got, want = scorer.explain(features, only, rows), scorer.explain(features, every, rows)
    assert got == want and any(got[0])
