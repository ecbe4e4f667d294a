"""Tests for churnguard.training.pipeline: selection and the promotion rule."""

from __future__ import annotations

from churnguard.training.pipeline import Candidate, decide_promotion, select


def test_the_gate_tolerates_noise_but_not_a_worse_model() -> None:
    champion = {"roc_auc": 0.80, "brier": 0.050}
    ok = decide_promotion({"roc_auc": 0.7951, "brier": 0.0549}, champion, 0.005, 3)
    worse_auc = decide_promotion({"roc_auc": 0.7940, "brier": 0.040}, champion, 0.005, 3)
    worse_brier = decide_promotion({"roc_auc": 0.90, "brier": 0.0560}, champion, 0.005, 3)
    assert ok.promoted
    assert not worse_auc.promoted and worse_auc.reason.startswith("AUC")
    assert not worse_brier.promoted and worse_brier.reason.startswith("Brier")


def test_selection_prefers_the_simpler_candidate_on_a_tie() -> None:
    def cand(name: str, auc: float) -> Candidate:
        return Candidate(name, "logistic", {}, None, {"roc_auc": auc})

    simple, complex_ = cand("simple", 0.800), cand("complex", 0.801)
    assert select([simple, complex_]).name == "simple"
    assert select([simple, cand("better", 0.81)]).name == "better"
