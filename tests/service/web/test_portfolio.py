"""Tests for portfolio.py: hand-counted months, a loop-by-loop reference on random and simulated
data, and the risk summary on SQLite and, when CHURNGUARD_TEST_POSTGRES_URL is set, PostgreSQL."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnguard.domain import churn as labels
from churnguard.domain.contract import CRMData, from_frames
from churnguard.scoring.risk import RISK_BANDS, risk_band
from churnguard.service.web.portfolio import (
    UNASSIGNED,
    MonthStats,
    monthly_portfolio,
    period_portfolio,
    retention_rate,
    risk_summary,
)
from churnguard.store.scores import ScoreRecord, ScoreStore, feature_digest
from churnguard.synth.business import SimulatedBusiness
from tests.factories import BACKENDS, open_store, random_crm

TS = "datetime64[s, UTC]"
SEEN_UNTIL = "2024-05-31"  # the last day of data in hand-built cases: observed until 2024-06-01


def day(s: str | None) -> pd.Timestamp:
    """A UTC timestamp (NaT for None)."""
    return pd.Timestamp(s, tz="UTC") if s else pd.NaT


def contracts(*rows: tuple[Any, ...]) -> pd.DataFrame:
    """A typed contracts table from (client, start, end, value[, cancelled_at]) tuples."""
    full = [(*r, None) if len(r) == 4 else r for r in rows]
    return pd.DataFrame(
        {
            "contract_id": pd.Series([f"k{i}" for i in range(len(full))], dtype="str"),
            "client_id": pd.Series([r[0] for r in full], dtype="str"),
            "start_date": pd.Series([day(r[1]) for r in full], dtype=TS),
            "end_date": pd.Series([day(r[2]) for r in full], dtype=TS),
            "monthly_value": pd.Series([float(r[3]) for r in full], dtype="float64"),
            "auto_renew": pd.Series([False] * len(full), dtype="bool"),
            "cancelled_at": pd.Series([day(r[4]) for r in full], dtype=TS),
        }
    )


def crm(table: pd.DataFrame, seen_until: str = SEEN_UNTIL) -> CRMData:
    """The contracts, with one interaction on ``seen_until`` so that the data ends the day after."""
    ids = table["client_id"].drop_duplicates()
    seen = pd.DataFrame(
        {"client_id": [ids.iloc[0]], "occurred_at": pd.Series([day(seen_until)], dtype=TS)}
    )
    return from_frames(
        {"clients": pd.DataFrame({"client_id": ids}), "contracts": table, "interactions": seen}
    )


def months_of(data: CRMData, first: str, last: str, grace_days: int = 30) -> dict[str, MonthStats]:
    """monthly_portfolio from month ``first`` to ``last`` (yyyy-mm), by month."""
    n = len(pd.period_range(first, last, freq="M"))
    until = pd.Period(last, freq="M").end_time.ceil("D")
    stats = monthly_portfolio(data, months=n, until=until, grace_days=grace_days)
    return {m.month.strftime("%Y-%m"): m for m in stats}


def counts(m: MonthStats) -> tuple[int, int, int, int]:
    return m.clients_start, m.new_clients, m.churned_clients, m.clients_end


def revenue(m: MonthStats) -> tuple[float, float, float, float]:
    return m.revenue_start, m.revenue_new, m.revenue_churned, m.revenue_end


# --- the worked example ------------------------------------------------------------------------


def test_retention_rate_of_the_worked_example() -> None:
    assert retention_rate(1000, 800, 400) == 40.0
    assert retention_rate(10, 10, 0) == 100.0
    assert math.isnan(retention_rate(0, 5, 5))


def worked_example() -> CRMData:
    """1,000 clients from January; 600 leave on 10 March; 400 new ones sign on 15 March."""
    return crm(
        contracts(
            *(
                (f"A{i:04d}", "2024-01-01", "2024-03-10" if i < 600 else None, 100)
                for i in range(1000)
            ),
            *((f"N{i:04d}", "2024-03-15", None, 100) for i in range(400)),
        )
    )


def test_worked_example_through_monthly_portfolio() -> None:
    march = months_of(worked_example(), "2024-03", "2024-03")["2024-03"]
    assert march.month == date(2024, 3, 1)
    assert counts(march) == (1000, 400, 600, 800)
    assert march.retention_rate == 40.0
    assert march.churn_rate == 60.0
    assert revenue(march) == (100_000.0, 40_000.0, 60_000.0, 80_000.0)
    assert march.revenue_churn_rate == 60.0
    assert march.net_revenue_retention == 40.0


def test_a_period_counts_as_one_long_month() -> None:
    data = worked_example()
    march = monthly_portfolio(data, months=3)[0]
    assert period_portfolio(data, start=date(2024, 3, 1), end=date(2024, 4, 1)) == march
    spring = period_portfolio(data, start=date(2024, 2, 1), end=date(2024, 6, 1))
    assert counts(spring) == (1000, 400, 600, 800)
    assert (spring.churn_rate, spring.net_revenue_retention) == (60.0, 40.0)
    with pytest.raises(ValueError, match="data's end"):
        period_portfolio(data, start=date(2024, 5, 1), end=date(2024, 7, 1))


def test_default_months_end_with_the_last_complete_month_of_the_data() -> None:
    stats = monthly_portfolio(worked_example(), months=3)  # the data ends on 1 June
    assert [m.month for m in stats] == [date(2024, 3, 1), date(2024, 4, 1), date(2024, 5, 1)]
    assert [counts(m) for m in stats] == [(1000, 400, 600, 800), (800, 0, 0, 800), (800, 0, 0, 800)]
    assert [m.retention_rate for m in stats[1:]] == [100.0, 100.0]


def test_first_month_of_the_data_has_every_client_new() -> None:
    january = months_of(worked_example(), "2024-01", "2024-01")["2024-01"]
    assert counts(january) == (0, 1000, 0, 1000)
    assert math.isnan(january.retention_rate) and math.isnan(january.net_revenue_retention)
    assert january.revenue_new == january.revenue_end == 100_000.0


# --- hand-built timelines ----------------------------------------------------------------------


def test_renewal_inside_grace_is_neither_churn_nor_new_and_carries_revenue() -> None:
    # a 21-day gap over 1 April, then a renewal at a higher value
    table = contracts(("a", "2024-01-01", "2024-03-20", 100), ("a", "2024-04-10", None, 150))
    months = months_of(crm(table), "2024-03", "2024-04")
    assert counts(months["2024-03"]) == (1, 0, 0, 1)
    assert revenue(months["2024-03"]) == (100.0, 0.0, 0.0, 100.0)  # in the gap: value carried
    assert counts(months["2024-04"]) == (1, 0, 0, 1)
    assert revenue(months["2024-04"]) == (100.0, 0.0, 0.0, 150.0)
    assert months["2024-04"].net_revenue_retention == 150.0


def test_re_signing_after_grace_is_a_churn_then_a_new_client() -> None:
    # 51 days without a contract: churn on 10 February, new again on 1 April
    table = contracts(("b", "2024-01-01", "2024-02-10", 100), ("b", "2024-04-01", None, 80))
    months = months_of(crm(table), "2024-02", "2024-04")
    assert counts(months["2024-02"]) == (1, 0, 1, 0)
    assert revenue(months["2024-02"]) == (100.0, 0.0, 100.0, 0.0)
    assert months["2024-02"].retention_rate == 0.0
    assert months["2024-02"].revenue_churn_rate == 100.0
    assert counts(months["2024-03"]) == (0, 0, 0, 0)
    assert math.isnan(months["2024-03"].churn_rate)
    assert counts(months["2024-04"]) == (0, 1, 0, 1)  # starting on the 1st: new, not at the start
    assert revenue(months["2024-04"]) == (0.0, 80.0, 0.0, 80.0)


def test_pending_churn_is_not_counted_until_its_grace_period_is_in_the_data() -> None:
    table = contracts(("c", "2024-01-01", "2024-05-20", 100))
    pending = months_of(crm(table, seen_until="2024-05-31"), "2024-05", "2024-05")["2024-05"]
    assert counts(pending) == (1, 0, 0, 1)
    assert revenue(pending) == (100.0, 0.0, 0.0, 100.0)  # keeps its last value, like its place
    assert pending.pending_clients == 1
    known = months_of(crm(table, seen_until="2024-06-30"), "2024-05", "2024-05")["2024-05"]
    assert counts(known) == (1, 0, 1, 0)
    assert revenue(known) == (100.0, 0.0, 100.0, 0.0)
    assert known.pending_clients == 0


def test_period_ending_on_the_first_counts_at_the_start_and_churns_that_month() -> None:
    table = contracts(("d", "2024-01-01", "2024-03-01", 100), ("e", "2024-01-01", None, 50))
    months = months_of(crm(table), "2024-02", "2024-03")
    assert counts(months["2024-02"]) == (2, 0, 0, 2)  # covered to the last moment of February
    assert counts(months["2024-03"]) == (2, 0, 1, 1)
    assert revenue(months["2024-03"]) == (150.0, 0.0, 100.0, 50.0)
    churn = labels.churn_dates(table, observed_until=labels.observation_end(crm(table)))
    assert churn["churn_date"].tolist() == [day("2024-03-01")]  # the month labels.py dates it in


def test_client_new_and_churned_in_one_month_counts_in_both_and_lowers_retention() -> None:
    table = contracts(("f", "2024-01-01", None, 100), ("g", "2024-03-05", "2024-03-20", 40))
    march = months_of(crm(table), "2024-03", "2024-03")["2024-03"]
    assert counts(march) == (1, 1, 1, 1)
    assert revenue(march) == (100.0, 0.0, 40.0, 100.0)  # g's value is lost, never at an end
    assert march.retention_rate == 0.0  # (1 - 1) / 1: g is in new_clients, not in clients_end
    assert march.churn_rate == 100.0
    assert march.net_revenue_retention == 100.0  # f, the only client at the start, is intact


def test_revenue_figures_and_net_revenue_retention_with_expansion_and_contraction() -> None:
    table = contracts(
        ("shrinks", "2024-01-01", None, 100),
        ("shrinks", "2024-01-01", "2024-03-15", 50),  # a service line ends: contraction
        ("grows", "2024-01-01", None, 100),
        ("grows", "2024-03-10", None, 60),  # a new service line: expansion
        ("leaves", "2024-01-01", "2024-03-05", 100),
        ("joins", "2024-03-20", None, 200),
    )
    march = months_of(crm(table), "2024-03", "2024-03")["2024-03"]
    assert counts(march) == (3, 1, 1, 3)
    assert revenue(march) == (350.0, 200.0, 100.0, 460.0)
    assert march.revenue_churn_rate == pytest.approx(100 / 350 * 100)
    assert march.net_revenue_retention == pytest.approx((100 + 160) / 350 * 100)


def test_churned_revenue_is_the_value_at_the_churn_not_at_the_month_start() -> None:
    table = contracts(
        ("h", "2024-01-01", "2024-03-10", 50),
        ("h", "2024-01-01", "2024-03-25", 150),
    )
    march = months_of(crm(table), "2024-03", "2024-03")["2024-03"]
    assert revenue(march) == (200.0, 0.0, 150.0, 0.0)
    assert march.net_revenue_retention == 0.0


def test_until_inside_a_month_ends_with_the_month_before_it() -> None:
    table = contracts(("a", "2024-01-01", None, 100))
    stats = monthly_portfolio(crm(table), months=2, until=pd.Timestamp("2024-04-15"))  # naive: UTC
    assert [m.month for m in stats] == [date(2024, 2, 1), date(2024, 3, 1)]


def test_months_the_data_does_not_cover_are_refused() -> None:
    table = contracts(("a", "2024-01-01", None, 100))
    with pytest.raises(ValueError, match="2024-06 is not complete"):
        monthly_portfolio(crm(table), until=day("2024-07-01"))
    with pytest.raises(ValueError, match="months must be >= 1"):
        monthly_portfolio(crm(table), months=0)
    with pytest.raises(ValueError, match="grace_days must be >= 0"):
        monthly_portfolio(crm(table), grace_days=-1)


def test_grace_days_decides_whether_a_gap_is_churn() -> None:
    table = contracts(("a", "2024-01-01", "2024-02-10", 100), ("a", "2024-03-01", None, 100))
    bridged = months_of(crm(table), "2024-02", "2024-03", grace_days=30)
    assert [counts(m) for m in bridged.values()] == [(1, 0, 0, 1), (1, 0, 0, 1)]
    split = months_of(crm(table), "2024-02", "2024-03", grace_days=7)
    assert [counts(m) for m in split.values()] == [(1, 0, 1, 0), (0, 1, 0, 1)]


# --- random and simulated data against a loop-by-loop reference --------------------------------


def edgy_contracts(seed: int, n_clients: int = 40) -> pd.DataFrame:
    """Random contracts whose dates fall on the 1st of a month half the time; some cover nothing."""
    rng = np.random.default_rng(seed)
    firsts = pd.date_range("2023-01-01", "2024-12-01", freq="MS", unit="s").to_numpy()
    days = pd.date_range("2023-01-01", "2024-12-31", freq="D", unit="s").to_numpy()
    k = n_clients * 4

    def dates(after: np.ndarray | None = None) -> np.ndarray:
        d = np.where(rng.random(k) < 0.5, rng.choice(firsts, k), rng.choice(days, k))
        return d if after is None else np.maximum(d, after)  # on or after: some cover nothing

    def column(d: np.ndarray, empty: float = 0.0) -> pd.Series:
        return pd.Series(d).mask(rng.random(k) < empty).dt.tz_localize("UTC")

    start = dates()
    return pd.DataFrame(
        {
            "contract_id": pd.Series([f"k{i}" for i in range(k)], dtype="str"),
            "client_id": pd.Series([f"E{c:03d}" for c in rng.integers(0, n_clients, k)]),
            "start_date": column(start),
            "end_date": column(dates(after=start), empty=0.1),
            "monthly_value": rng.integers(0, 10, k) * 50.0,
            "auto_renew": False,
            "cancelled_at": column(dates(after=start), empty=0.8),
        }
    )


def reference(data: CRMData, stats: list[MonthStats], grace_days: int) -> list[dict[str, Any]]:
    """The figures monthly_portfolio should give, client by client and month by month."""
    periods = labels.activity_periods(data.contracts, grace_days, labels.observation_end(data))
    cov = labels.coverage(data.contracts)
    cov = cov[cov["end"].isna() | (cov["end"] > cov["start"])]
    terms = {
        c: list(zip(g["start"], g["end"], g["monthly_value"], strict=True))
        for c, g in cov.groupby("client_id")
    }

    def covers(s: pd.Timestamp, e: pd.Timestamp, b: pd.Timestamp) -> bool:
        return bool(s < b and (pd.isna(e) or e >= b))  # covers the moment before b

    def value(client: str, b: pd.Timestamp) -> float:  # just before b, carried through a gap
        if not any(covers(s, e, b) for s, e, _ in terms[client]):
            b = max(e for s, e, _ in terms[client] if s < b)
        return sum(v for s, e, v in terms[client] if covers(s, e, b))

    def active(p: Any, b: pd.Timestamp) -> bool:
        return bool(p.start < b and (not p.churned or p.end >= b))

    rows = list(periods.itertuples())
    bounds = [day(str(m.month)) for m in stats] + [
        day(str(stats[-1].month)) + pd.offsets.MonthBegin()
    ]
    out = []
    for b0, b1 in itertools.pairwise(bounds):
        new = [p for p in rows if b0 <= p.start < b1]
        gone = [p for p in rows if p.churned and b0 <= p.end < b1]
        pending = [p for p in rows if p.pending and b0 <= p.end < b1]
        at_start = [p for p in rows if active(p, b0)]
        at_end = [p for p in rows if active(p, b1)]
        out.append(
            {
                "counts": (len(at_start), len(new), len(gone), len(at_end)),
                "pending": len(pending),
                "revenue": (
                    sum(value(p.client_id, b0) for p in at_start),
                    sum(value(p.client_id, b1) for p in new if active(p, b1)),
                    sum(value(p.client_id, p.end) for p in gone),
                    sum(value(p.client_id, b1) for p in at_end),
                ),
            }
        )
    return out


def check_against_reference(data: CRMData, months: int, grace_days: int = 30) -> list[MonthStats]:
    stats = monthly_portfolio(data, months=months, grace_days=grace_days)
    expected = reference(data, stats, grace_days)
    for m, want in zip(stats, expected, strict=True):
        assert counts(m) == want["counts"], m.month
        assert m.pending_clients == want["pending"], m.month
        assert revenue(m) == pytest.approx(want["revenue"], abs=1e-6), m.month
    return stats


def check_consistency(stats: list[MonthStats]) -> None:
    for m in stats:
        assert m.clients_end == m.clients_start + m.new_clients - m.churned_clients
        if m.clients_start:
            assert m.retention_rate == pytest.approx(100 - m.churn_rate)
    for before, after in itertools.pairwise(stats):
        assert before.clients_end == after.clients_start
        assert before.revenue_end == after.revenue_start


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("grace_days", [0, 30])
def test_random_data_matches_the_reference(seed: int, grace_days: int) -> None:
    stats = check_against_reference(random_crm(40, seed=seed), 30, grace_days)
    check_consistency(stats)
    assert sum(m.churned_clients for m in stats) > 0 and sum(m.new_clients for m in stats) > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_dates_on_month_starts_match_the_reference(seed: int) -> None:
    leavers = contracts(
        ("P1", "2024-06-01", "2024-12-20", 100),  # pending: its grace period runs past the data
        ("P2", "2024-11-15", "2025-01-01", 70),  # pending, and ends after the last month
    ).assign(contract_id=["p1", "p2"])
    data = crm(pd.concat([edgy_contracts(seed), leavers]), seen_until="2025-01-10")
    stats = check_against_reference(data, 24)
    check_consistency(stats)
    assert stats[-1].month == date(2024, 12, 1) and stats[-1].pending_clients >= 1


def test_simulated_business_matches_the_reference_and_labels(business: SimulatedBusiness) -> None:
    stats = check_against_reference(business.data, 24)
    check_consistency(stats)
    churns = labels.churn_dates(
        business.data.contracts, observed_until=labels.observation_end(business.data)
    )
    in_months = churns["churn_date"].dt.strftime("%Y-%m").value_counts()
    assert [m.churned_clients for m in stats] == [
        in_months.get(m.month.strftime("%Y-%m"), 0) for m in stats
    ]
    assert sum(m.churned_clients for m in stats) > 10  # enough churn for the test to mean something


# --- risk summary ------------------------------------------------------------------------------

JAN = datetime(2025, 1, 1, tzinfo=UTC)
FEB = datetime(2025, 2, 1, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScoreStore]:
    with open_store(request.param, tmp_path) as store:
        yield store


def score(client_id: str, probability: float, revenue_at_risk: float, **values: Any) -> ScoreRecord:
    """A latest-score record at FEB with the band the probability falls in."""
    fields: dict[str, Any] = {
        "as_of": FEB,
        "model_version": "1",
        "band": str(risk_band(probability)),
        "monthly_value": 1000.0,
        "feature_digest": feature_digest({"client_id": client_id}),
        "change": {"direction": "new"},
        "account_manager": "Ana",
        "segment": "smb",
    }
    fields.update(values)
    return ScoreRecord(
        client_id=client_id, probability=probability, revenue_at_risk=revenue_at_risk, **fields
    )


def test_risk_summary_aggregates_each_clients_latest_score(store: ScoreStore) -> None:
    store.save_scores([score("C1", 0.9, 10_000.0, as_of=JAN)])  # superseded below
    store.save_scores(
        [
            score("C1", 0.05, 100.0, account_manager="Ben"),
            score("C2", 0.3, 3000.0, segment="ent"),  # on the high band's edge
            score("C3", 0.1, 500.0, account_manager=None, segment=None),
            score("C4", 1.0, 7000.0, account_manager=""),
            score("C5", 0.0, 0.0),
        ]
    )
    summary = risk_summary(store)
    assert summary.clients == 5
    assert summary.revenue_at_risk == 10_600.0
    assert summary.by_band == {"low": 2, "medium": 1, "high": 2}
    assert [n for _, _, n in summary.histogram] == [2, 1, 0, 1, 0, 0, 0, 0, 0, 1]
    assert summary.histogram[3][:2] == (0.3, 0.4)
    assert summary.by_manager == [(UNASSIGNED, 7500.0, 2), ("Ana", 3000.0, 2), ("Ben", 100.0, 1)]
    assert summary.by_segment == [("smb", 7100.0, 3), ("ent", 3000.0, 1), (UNASSIGNED, 500.0, 1)]


def test_risk_summary_of_an_empty_store_has_every_band_and_bin(store: ScoreStore) -> None:
    summary = risk_summary(store)
    assert (summary.clients, summary.revenue_at_risk) == (0, 0.0)
    assert summary.by_band == dict.fromkeys(RISK_BANDS, 0)
    assert [(lo, hi) for lo, hi, _ in summary.histogram] == [
        (k / 10, (k + 1) / 10) for k in range(10)
    ]
    assert sum(n for _, _, n in summary.histogram) == 0
    assert summary.by_manager == [] and summary.by_segment == []


def test_a_band_outside_the_known_ones_is_shown_after_them(store: ScoreStore) -> None:
    store.save_scores([score("C1", 0.99, 1.0, band="critical"), score("C2", 0.5, 1.0)])
    assert risk_summary(store).by_band == {"low": 0, "medium": 0, "high": 1, "critical": 1}


def test_groups_with_equal_revenue_order_by_clients_then_name(store: ScoreStore) -> None:
    store.save_scores(
        [
            score("C1", 0.5, 50.0, account_manager="Zoe"),
            score("C2", 0.5, 50.0, account_manager="Zoe"),
            score("C3", 0.5, 100.0, account_manager=None),
            score("C4", 0.5, 100.0, account_manager="Cy"),
            score("C5", 0.5, 100.0, account_manager="Bo"),
        ]
    )
    assert store.revenue_at_risk_by("account_manager") == [
        ("Zoe", 100.0, 2),
        ("Bo", 100.0, 1),
        ("Cy", 100.0, 1),
        (None, 100.0, 1),
    ]
    with pytest.raises(ValueError, match="column must be one of"):
        store.revenue_at_risk_by("client_name")


def test_histogram_bins_put_an_edge_in_the_bin_above_it(store: ScoreStore) -> None:
    store.save_scores([score(f"C{i}", p, 1.0) for i, p in enumerate([0.0, 0.25, 0.5, 0.7, 1.0])])
    assert store.probability_histogram(4) == [
        (0.0, 0.25, 1),
        (0.25, 0.5, 1),
        (0.5, 0.75, 2),
        (0.75, 1.0, 1),
    ]
    assert store.probability_histogram(1) == [(0.0, 1.0, 5)]
    assert store.probability_histogram()[7] == (0.7, 0.8, 1)


def test_risk_summary_reads_one_snapshot_while_a_batch_lands(
    store: ScoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_scores([score("C1", 0.9, 100.0), score("C2", 0.05, 50.0)])
    totals = store.latest_totals

    def totals_then_a_batch(conn: Any = None) -> tuple[int, float]:
        read = totals(conn)
        later = FEB + timedelta(days=1)
        store.save_scores([score("C3", 0.5, 70.0, as_of=later), score("C1", 0.0, 0.0, as_of=later)])
        return read

    monkeypatch.setattr(store, "latest_totals", totals_then_a_batch)
    summary = risk_summary(store)
    assert summary.clients == sum(summary.by_band.values()) == 2
    assert summary.by_band == {"low": 1, "medium": 0, "high": 1}  # not C1's newer low score
    assert sum(n for _, _, n in summary.histogram) == 2
    assert sum(r for _, r, _ in summary.by_manager) == summary.revenue_at_risk == 150.0
    monkeypatch.undo()
    after = risk_summary(store)
    assert (after.clients, after.revenue_at_risk) == (3, 120.0)  # the batch, once read anew


def test_totals_and_band_counts_filter_as_the_client_list_does(store: ScoreStore) -> None:
    store.save_scores(
        [
            score("C1", 0.9, 900.0, client_name="Acme 100%"),
            score("C2", 0.05, 50.0, account_manager="Ben", client_name="Acme two"),
            score("C3", 0.05, 20.0, client_name="Bolt"),
        ]
    )
    assert store.latest_totals(manager="Ana") == (2, 920.0)
    assert store.latest_totals(manager="Ana", band="low") == (1, 20.0)
    assert store.latest_totals(search="acme") == (2, 950.0)
    assert store.latest_totals(search="100%") == (1, 900.0)  # a wildcard is matched as text
    assert store.band_counts(manager="Ana") == {"high": 1, "low": 1}
    assert store.band_counts(manager="Ana", search="bolt") == {"low": 1}
    assert store.latest_totals(manager="Nobody") == (0, 0.0) and store.band_counts(search="x") == {}
