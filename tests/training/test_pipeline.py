"""Tests for churnguard.training.pipeline: selection, the usefulness gate, the promotion rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from churnguard.training.pipeline import (
    Candidate,
    Evaluation,
    chosen_because,
    decide_promotion,
    gate,
    select,
    useless_because,
)
from churnguard.training.report import base_rate_line


def test_the_gate_tolerates_noise_but_not_a_worse_model() -> None:
    champion = {"roc_auc": 0.80, "brier": 0.050}
    ok = decide_promotion({"roc_auc": 0.7951, "brier": 0.0549}, champion, 0.005, 3)
    worse_auc = decide_promotion({"roc_auc": 0.7940, "brier": 0.040}, champion, 0.005, 3)
    worse_brier = decide_promotion({"roc_auc": 0.90, "brier": 0.0560}, champion, 0.005, 3)
    assert ok.promoted
    assert not worse_auc.promoted and worse_auc.reason.startswith("AUC")
    assert not worse_brier.promoted and worse_brier.reason.startswith("Brier")


def _candidate(name: str, log_loss: float) -> Candidate:
    metrics = {"log_loss": log_loss, "roc_auc": 0.8, "pr_auc": 0.3}
    return Candidate(name, "logistic", {}, None, metrics)


def test_selection_prefers_the_simpler_candidate_on_a_tie() -> None:
    simple, complex_ = _candidate("simple", 0.1500), _candidate("complex", 0.1496)
    assert select([simple, complex_]).name == "simple"
    assert select([simple, _candidate("better", 0.1400)]).name == "better"


def test_the_reason_for_the_choice_is_the_real_one() -> None:
    simple, complex_ = _candidate("simple", 0.1500), _candidate("complex", 0.1496)
    tie = chosen_because([simple, complex_], simple, "validation")
    assert "within 0.5% of the lowest (0.1496, complex): the simpler model" in tie
    better = _candidate("better", 0.1400)
    won = chosen_because([simple, better], better, "validation")
    assert won.startswith("lowest validation log loss 0.1400 (next: simple 0.1500")
    assert "simpler" not in won


# --- usefulness gate ----------------------------------------------------------------------------


def _held_out(auc: float, interval: tuple[float, float], events: int, brier: float) -> Evaluation:
    metrics = {"roc_auc": auc, "brier": brier, "base_rate": 0.05, "n_positive": float(events)}
    return Evaluation(metrics, {"roc_auc": interval}, metrics, np.zeros(1), np.zeros(1))


class _Registry:
    """A registry stand-in with a champion version (or none)."""

    def __init__(self, champion: int | None) -> None:
        self.champion = champion

    def alias_version(self, alias: str) -> int | None:
        return self.champion


def test_a_model_no_better_than_chance_or_the_base_rate_is_useless() -> None:
    chance = useless_because(_held_out(0.53, (0.47, 0.58), 200, 0.04), "more data")
    assert chance.startswith("no better than chance") and "0.470-0.580" in chance
    thin = useless_because(_held_out(0.46, (0.37, 0.58), 19, 0.04), "export more history")
    assert "only 19 churn events" in thin and "too few to tell" in thin
    assert thin.endswith("export more history")
    flat = useless_because(_held_out(0.70, (0.62, 0.77), 200, 0.0480), "more data")
    assert flat.startswith("no better than the base rate") and "0.0475" in flat
    assert useless_because(_held_out(0.70, (0.62, 0.77), 200, 0.0400), "more data") == ""


@pytest.mark.parametrize("champion", [None, 4])
def test_a_useless_model_is_never_promoted(champion: int | None) -> None:
    def rescore(model: object) -> dict[str, float]:
        raise AssertionError("a useless model is not compared with the champion")

    registry: Any = _Registry(champion)
    promotion = gate(registry, {}, rescore, 0.005, useless="no better than chance: ...")
    assert not promotion.promoted
    assert promotion.reason.startswith("not promoted, no better than chance")
    stays = "no champion" if champion is None else f"champion v{champion} stays"
    assert promotion.reason.endswith(stays)


def test_the_summary_puts_the_base_rate_beside_the_model() -> None:
    line = base_rate_line(_held_out(0.70, (0.62, 0.77), 200, 0.04))
    assert line == (
        "Base rate 5.0%: predicting it for everyone scores Brier 0.0475, PR AUC 0.0500, ROC AUC 0.5"
    )


def test_candidates_fitted_side_by_side_are_those_fitted_one_after_the_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pandas as pd

    from churnguard.modeling.model import ChurnModel
    from churnguard.training import pipeline
    from churnguard.training.dataset import TrainOptions

    rng = np.random.default_rng(3)
    n = 1200
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.random(n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["a"] * X["b"] * 2 - 1.5)))).astype(np.int64)
    windows, labels = (X.iloc[:800], X.iloc[800:]), (y[:800], y[800:])
    options = TrainOptions(lightgbm_min_train_events=10)

    def package(est: Any, kind: Any, calibrator: Any) -> ChurnModel:
        return ChurnModel(None, kind, est, calibrator, 90, list(X.columns), {})  # type: ignore[arg-type]

    fits = []
    for threads in (1, 2):
        monkeypatch.setattr(pipeline, "FIT_THREADS", threads)
        fits.append(
            pipeline.fit_on_windows(windows, labels, [], int(y[:800].sum()), options, package)
        )
    alone, together = fits
    assert [c.name for c in alone.candidates] == [c.name for c in together.candidates]
    assert len(alone.candidates) > 3  # LightGBM's too
    for a, b in zip(alone.candidates, together.candidates, strict=True):
        assert a.params == b.params
        np.testing.assert_equal(a.validation, b.validation)  # NaN where there is no revenue
    assert alone.chosen.name == together.chosen.name and alone.because == together.because
    np.testing.assert_array_equal(alone.model.raw_proba(X), together.model.raw_proba(X))
