"""Tests for churnguard.training.evaluate: known answers, input checks, bootstrap and figures."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from churnguard.training.evaluate import (
    METRICS,
    bootstrap_intervals,
    calibration_table,
    evaluate,
    lift_table,
    plot_calibration,
    plot_feature_importance,
    plot_gains,
    plot_precision_recall,
    plot_roc,
    summarize_backtest,
)


def _calibrated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores p ~ U(0, 1) and labels drawn as Bernoulli(p)."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return (rng.random(n) < p).astype(int), p


def _perfect(n: int, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled labels whose scores rank every positive above every negative."""
    rng = np.random.default_rng(1)
    y = rng.permutation(np.r_[np.ones(n_pos, int), np.zeros(n - n_pos, int)])
    return y, np.where(y == 1, 0.6, 0.1) + rng.random(n) * 0.3


# ---------------------------------------------------------------- evaluate


def test_evaluate_returns_every_metric_in_order() -> None:
    y, p = _calibrated(500)
    assert tuple(evaluate(y, p)) == METRICS


@pytest.mark.parametrize("n_pos", [50, 100, 250])
def test_perfect_ranking_has_auc_one_and_maximal_lift(n_pos: int) -> None:
    y, p = _perfect(1000, n_pos)
    m = evaluate(y, p)
    assert m["roc_auc"] == 1.0
    assert m["pr_auc"] == 1.0
    # the top decile is all churners (lift 1 / base rate) unless there are fewer than a decile
    assert m["top_decile_lift"] == pytest.approx(min(1 / m["base_rate"], 10.0))
    assert m["top_decile_recall"] == pytest.approx(min(1.0, 100 / n_pos))


def test_random_scores_have_auc_near_half_and_lift_near_one() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(20_000) < 0.2).astype(int)
    m = evaluate(y, rng.random(20_000))
    assert m["roc_auc"] == pytest.approx(0.5, abs=0.02)
    assert m["pr_auc"] == pytest.approx(0.2, abs=0.02)
    assert m["top_decile_lift"] == pytest.approx(1.0, abs=0.15)


def test_calibrated_predictor_has_small_ece_and_cubed_one_large() -> None:
    y, p = _calibrated(20_000)
    assert evaluate(y, p)["ece"] < 0.02
    assert evaluate(y, p**3)["ece"] > 0.2  # E|p - p^3| = 1/4 for p ~ U(0, 1)


def test_brier_and_log_loss_hand_computed() -> None:
    m = evaluate([1, 0], [0.8, 0.3])
    assert m["brier"] == pytest.approx((0.2**2 + 0.3**2) / 2)
    assert m["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2)


def test_log_loss_clips_confident_misses_to_1e_15() -> None:
    assert evaluate([1, 1], [0.0, 0.0])["log_loss"] == pytest.approx(-np.log(1e-15))


def test_ece_hand_computed() -> None:
    y = [0, 0, 1, 1, 1, 0]
    p = [0.1, 0.2, 0.3, 0.4, 0.8, 0.9]
    # bins {0.1, 0.2, 0.3}: |0.2 - 1/3|; {0.4, 0.8, 0.9}: |0.7 - 2/3|; each weighted 1/2
    expected = 0.5 * abs(0.2 - 1 / 3) + 0.5 * abs(0.7 - 2 / 3)
    assert evaluate(y, p, n_bins=2)["ece"] == pytest.approx(expected)


def test_ece_keeps_tied_scores_in_one_bin_whatever_the_row_order() -> None:
    y, p = np.array([0, 1, 0, 1]), np.array([0.2, 0.2, 0.2, 0.6])
    expected = 0.75 * abs(0.2 - 1 / 3) + 0.25 * abs(0.6 - 1.0)
    assert evaluate(y, p, n_bins=2)["ece"] == pytest.approx(expected)
    assert evaluate(y[::-1], p[::-1], n_bins=2)["ece"] == pytest.approx(expected)
    assert calibration_table(y, p, n_bins=2)["count"].tolist() == [3, 1]


def test_revenue_captured_hand_computed() -> None:
    y = [1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    revenue = [100, 50, 300, 0, 0, 0, 0, 0, 600, 0, 0, 0]
    p = [0.3, 0.95, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1]
    # top ceil(12 / 10) = 2 rows: rows 1 (not a churner) and 2 (300 of 1000 at risk)
    m = evaluate(y, p, revenue)
    assert m["top_decile_revenue_captured"] == pytest.approx(0.3)
    assert m["top_decile_recall"] == pytest.approx(1 / 3)
    assert m["top_decile_lift"] == pytest.approx((1 / 2) / (3 / 12))


def test_ties_at_the_decile_cut_go_to_earlier_rows() -> None:
    y = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    revenue = [100, 0, 300, 0, 0, 0, 0, 0, 0, 0]
    p = [0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    assert evaluate(y, p, revenue)["top_decile_revenue_captured"] == pytest.approx(0.25)
    swapped = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert evaluate(swapped, p)["top_decile_recall"] == 0.0  # row 0 wins the tie


def test_revenue_captured_is_nan_without_revenue() -> None:
    y, p = _calibrated(200)
    assert np.isnan(evaluate(y, p)["top_decile_revenue_captured"])


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_gives_nan_auc_without_raising_or_warning(label: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = evaluate([label] * 20, np.linspace(0, 1, 20))
    assert np.isnan(m["roc_auc"])
    assert np.isnan(m["pr_auc"])
    assert np.isfinite(m["brier"])
    assert m["base_rate"] == label


@pytest.mark.parametrize(
    ("y", "p", "revenue", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], None, "0/1"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], None, "0/1"),
        ([0, 1, 1], [0.1, np.nan, 0.3], None, "NaN"),
        ([0, 1, 1], [0.1, 1.2, 0.3], None, r"\[0, 1\]"),
        ([0, 1, 1], [-0.1, 0.2, 0.3], None, r"\[0, 1\]"),
        ([0, 1, 1], [0.1, 0.2], None, "length mismatch"),
        ([], [], None, "empty"),
        ([[0, 1]], [[0.1, 0.2]], None, "1-D"),
        ([0, 1], ["a", "b"], None, "numeric"),
        ([0, 1], [0.1, 0.2], [10.0], "length mismatch"),
        ([0, 1], [0.1, 0.2], [10.0, -1.0], "non-negative"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(
    y: list, p: list, revenue: list | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(y, p, revenue)


def test_bad_n_bins_raises() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        evaluate([0, 1], [0.1, 0.9], n_bins=0)


def test_inputs_are_not_mutated() -> None:
    y, p = _calibrated(100)
    y_before, p_before = y.copy(), p.copy()
    evaluate(y, p, revenue=p * 10)
    bootstrap_intervals(y, p, n_boot=5)
    assert np.array_equal(y, y_before) and np.array_equal(p, p_before)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_intervals_contain_the_point_estimate() -> None:
    y, p = _calibrated(2000)
    revenue = np.random.default_rng(5).gamma(2.0, 100.0, 2000)
    point = evaluate(y, p, revenue)
    intervals = bootstrap_intervals(y, p, revenue)
    assert tuple(intervals) == METRICS
    for name in METRICS:
        low, high = intervals[name]
        assert low <= point[name] <= high, name
        assert low < high or name == "n", name


def test_bootstrap_intervals_narrow_with_more_data() -> None:
    small = bootstrap_intervals(*_calibrated(400))
    large = bootstrap_intervals(*_calibrated(6400))
    for name in ("roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "base_rate"):
        width_small = small[name][1] - small[name][0]
        width_large = large[name][1] - large[name][0]
        assert width_large < width_small / 2, name  # about 1 / sqrt(16) = 1 / 4


def test_bootstrap_resample_metrics_match_evaluate() -> None:
    # one resample gives a zero-width interval at that resample's metrics; ties test the grouping
    y, p = _calibrated(300, seed=7)
    p = np.round(p, 1)
    revenue = np.arange(300.0)
    idx = np.sort(np.random.default_rng(11).integers(0, 300, size=(1, 300))[0])
    expected = evaluate(y[idx], p[idx], revenue[idx])
    intervals = bootstrap_intervals(y, p, revenue, n_boot=1, seed=11)
    for name in METRICS:
        assert intervals[name][0] == pytest.approx(expected[name]), name
        assert intervals[name][1] == pytest.approx(expected[name]), name


def test_bootstrap_is_reproducible_and_seed_dependent() -> None:
    y, p = _calibrated(500)
    assert bootstrap_intervals(y, p, seed=1) == bootstrap_intervals(y, p, seed=1)
    assert bootstrap_intervals(y, p, seed=1) != bootstrap_intervals(y, p, seed=2)


def test_bootstrap_skips_one_class_resamples_for_aucs() -> None:
    y = np.r_[1, np.zeros(29, int)]  # most resamples miss the single positive
    intervals = bootstrap_intervals(y, np.linspace(0, 1, 30), n_boot=100)
    assert np.isfinite(intervals["roc_auc"]).all()
    one_class = bootstrap_intervals(np.zeros(30, int), np.linspace(0, 1, 30), n_boot=20)
    assert np.isnan(one_class["roc_auc"]).all()
    assert np.isfinite(one_class["brier"]).all()


def test_bootstrap_rejects_bad_level() -> None:
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals([0, 1], [0.1, 0.9], level=1.5)


# ---------------------------------------------------------------- tables


def test_calibration_table_shape_and_consistency_with_ece() -> None:
    y, p = _calibrated(1000)
    table = calibration_table(y, p)
    assert list(table.columns) == ["bin", "mean_predicted", "observed_rate", "count"]
    assert table["bin"].tolist() == list(range(1, 11))
    assert (table["count"] == 100).all()
    assert table["mean_predicted"].is_monotonic_increasing
    gap = (table["mean_predicted"] - table["observed_rate"]).abs()
    assert (gap * table["count"]).sum() / 1000 == pytest.approx(evaluate(y, p)["ece"])


def test_lift_table_known_answers() -> None:
    y, p = _perfect(1000, 100)
    table = lift_table(y, p)
    assert list(table.columns) == [
        "decile",
        "count",
        "positives",
        "rate",
        "lift",
        "cumulative_recall",
    ]
    assert table["positives"].tolist() == [100] + [0] * 9
    assert table["lift"].iloc[0] == pytest.approx(10.0)
    assert (table["cumulative_recall"] == 1.0).all()


def test_lift_table_top_decile_matches_evaluate_when_n_is_not_a_multiple_of_ten() -> None:
    y, p = _calibrated(1003)
    table = lift_table(y, p)
    assert table["count"].sum() == 1003
    assert table["count"].iloc[0] == 101  # ceil(1003 / 10), as in evaluate
    assert table["lift"].iloc[0] == pytest.approx(evaluate(y, p)["top_decile_lift"])
    assert table["cumulative_recall"].iloc[-1] == pytest.approx(1.0)


def test_summarize_backtest_known_values() -> None:
    per_cutoff = pd.DataFrame(
        {
            "cutoff": ["2024-01", "2024-04", "2024-07"],
            "roc_auc": [0.7, 0.8, 0.9],
            "brier": [0.1, 0.1, np.nan],
        }
    )
    summary = summarize_backtest(per_cutoff)
    assert list(summary.index) == ["roc_auc", "brier"]
    assert list(summary.columns) == ["mean", "std", "min", "max"]
    assert summary.loc["roc_auc"].tolist() == pytest.approx([0.8, 0.1, 0.7, 0.9])
    assert summary.loc["brier", "mean"] == pytest.approx(0.1)


def test_summarize_backtest_rejects_empty() -> None:
    with pytest.raises(ValueError, match="per_cutoff"):
        summarize_backtest(pd.DataFrame())


# ---------------------------------------------------------------- figures


def _assert_saves(fig: Figure, tmp_path: Path, name: str) -> None:
    """The figure is headless (Agg), readable-sized and renders to a non-trivial PNG."""
    assert isinstance(fig.canvas, FigureCanvasAgg)
    assert fig.get_dpi() == 100
    assert fig.get_figwidth() >= 6 and fig.get_figheight() >= 4.5
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_plot_roc_overlays_oracle(tmp_path: Path) -> None:
    y, p = _calibrated(500)
    fig = plot_roc(y, np.clip(p + 0.1, 0, 1), label="lgbm", oracle=p)
    ax = fig.axes[0]
    assert ax.get_title() == "ROC curve"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("False positive rate", "True positive rate")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0].startswith("lgbm (AUC = ") and labels[1].startswith("oracle (AUC = ")
    assert "chance" in labels
    _assert_saves(fig, tmp_path, "roc")


def test_plot_roc_without_oracle_has_model_and_chance_only() -> None:
    y, p = _calibrated(200)
    assert len(plot_roc(y, p).axes[0].get_lines()) == 2


def test_plot_precision_recall(tmp_path: Path) -> None:
    y, p = _calibrated(500)
    fig = plot_precision_recall(y, p)
    ax = fig.axes[0]
    assert ax.get_title() == "Precision-recall curve"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Recall", "Precision")
    _assert_saves(fig, tmp_path, "pr")


def test_plot_calibration_has_reliability_and_histogram(tmp_path: Path) -> None:
    y, p = _calibrated(500)
    fig = plot_calibration(y, p)
    reliability, histogram = fig.axes
    assert reliability.get_title() == "Calibration (reliability diagram)"
    assert reliability.get_ylabel() == "Observed churn rate"
    assert histogram.get_ylabel() == "Count"
    assert histogram.get_xlabel() == "Predicted churn probability"
    assert sum(patch.get_height() for patch in histogram.patches) == 500
    _assert_saves(fig, tmp_path, "calibration")


def test_plot_gains_has_gains_and_lift_panels(tmp_path: Path) -> None:
    y, p = _calibrated(500)
    fig = plot_gains(y, p)
    gains, lift = fig.axes
    assert gains.get_title() == "Cumulative gains"
    assert gains.get_ylabel() == "Share of churners captured"
    assert "random" in [text.get_text() for text in gains.get_legend().get_texts()]
    assert lift.get_title() == "Lift per decile"
    assert len(lift.patches) == 10
    _assert_saves(fig, tmp_path, "gains")


def test_plot_feature_importance_puts_largest_on_top(tmp_path: Path) -> None:
    importance = pd.Series({f"f{i}": float(i) for i in range(30)}, name="gain")
    fig = plot_feature_importance(importance, top=5)
    ax = fig.axes[0]
    assert ax.get_title() == "Feature importance (top 5)"
    assert ax.get_xlabel() == "gain"
    ticks = [label.get_text() for label in ax.get_yticklabels()]
    assert ticks[::-1] == ["f29", "f28", "f27", "f26", "f25"]  # last tick is drawn on top
    _assert_saves(fig, tmp_path, "importance")


@pytest.mark.parametrize("plot", [plot_roc, plot_precision_recall, plot_gains])
def test_curves_need_both_classes(plot: Callable[..., Figure]) -> None:
    with pytest.raises(ValueError, match="both classes"):
        plot(np.zeros(10, int), np.linspace(0, 1, 10))


def test_centred_ece_interval_contains_its_point_estimate() -> None:
    rng = np.random.default_rng(1)  # calibrated, rare churn: the demo's case
    p = rng.uniform(0.01, 0.1, 5000)
    y = (rng.random(5000) < p).astype(int)
    point = evaluate(y, p)["ece"]
    plain = bootstrap_intervals(y, p, seed=3)
    centred = bootstrap_intervals(y, p, seed=3, centred=("ece",))
    assert plain["ece"][0] > point  # resampled ECEs sit above the point estimate
    assert centred["ece"][0] <= point <= centred["ece"][1]
    assert centred["roc_auc"] == plain["roc_auc"]  # other metrics are left alone
