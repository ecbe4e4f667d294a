"""Tests for churn.py: hand-built timelines, and a day-by-day reference on random ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.domain import churn as labels
from churnguard.domain.contract import CRMData, from_frames

TS = "datetime64[s, UTC]"
OBS = "2026-01-01"  # observed_until for hand-built timelines unless a test says otherwise


def day(s: str | None) -> pd.Timestamp:
    """A UTC timestamp (NaT for None)."""
    return pd.Timestamp(s, tz="UTC") if s else pd.NaT


def contracts(*rows: tuple) -> pd.DataFrame:
    """A typed contracts table from (client, start, end, value[, cancelled_at]) tuples."""
    full = [(*r, None) if len(r) == 4 else r for r in rows]
    return pd.DataFrame(
        {
            "contract_id": pd.Series([f"k{i}" for i in range(len(full))], dtype="str"),
            "client_id": pd.Series([r[0] for r in full], dtype="str"),
            "service_line": pd.Series(["audit"] * len(full), dtype="str"),
            "start_date": pd.Series([day(r[1]) for r in full], dtype=TS),
            "end_date": pd.Series([day(r[2]) for r in full], dtype=TS),
            "monthly_value": pd.Series([float(r[3]) for r in full], dtype="float64"),
            "auto_renew": pd.Series([False] * len(full), dtype="bool"),
            "cancelled_at": pd.Series([day(r[4]) for r in full], dtype=TS),
        }
    )


def crm(table: pd.DataFrame, **frames: pd.DataFrame) -> CRMData:
    """A CRMData holding the contracts and any other frames given."""
    clients = pd.DataFrame({"client_id": table["client_id"].drop_duplicates()})
    return from_frames({"clients": clients, "contracts": table, **frames})


def churns(table: pd.DataFrame, obs: str = OBS, grace: int = 30) -> list[tuple[str, str]]:
    """Churn dates as (client, yyyy-mm-dd) pairs."""
    out = labels.churn_dates(table, grace_days=grace, observed_until=day(obs))
    return [
        (c, d.strftime("%Y-%m-%d"))
        for c, d in zip(out["client_id"], out["churn_date"], strict=True)
    ]


def label_row(table: pd.DataFrame, as_of: str, obs: str = OBS, horizon: int = 90) -> pd.Series:
    """The single snapshot row of a one-client table at as_of."""
    out = labels.build_labels(crm(table), [day(as_of)], horizon, observed_until=day(obs))
    assert len(out) == 1, out
    return out.iloc[0]


# --- churn -------------------------------------------------------------------------------------


def test_a_contract_stops_at_the_earlier_of_its_end_and_its_cancellation() -> None:
    c = contracts(
        ("a", "2024-01-01", "2024-06-01", 1, "2024-03-01"),  # cancelled before its end
        ("a", "2024-01-01", "2024-06-01", 1, "2024-09-01"),  # cancelled after its end
        ("a", "2024-01-01", None, 1, "2024-03-01"),  # rolling, cancelled
        ("a", "2024-01-01", "2024-06-01", 1),  # fixed term
        ("a", "2024-01-01", None, 1),  # rolling
    )
    stops = labels.contract_stops(c.set_axis([10, 11, 12, 13, 14]))
    expected = ["2024-03-01", "2024-06-01", "2024-03-01", "2024-06-01", None]
    assert stops.tolist() == [day(s) for s in expected]
    assert stops.index.tolist() == [10, 11, 12, 13, 14] and str(stops.dtype) == TS
    assert labels.coverage(c)["end"].tolist() == stops.tolist()


def test_renewal_inside_grace_is_not_churn_but_one_day_more_is() -> None:
    table = contracts(
        ("inside", "2023-01-01", "2024-01-01", 100),
        ("inside", "2024-01-31", None, 100),  # 30-day gap: bridged
        ("outside", "2023-01-01", "2024-01-01", 100),
        ("outside", "2024-02-01", None, 100),  # 31-day gap: churn, then a new period
    )
    assert churns(table) == [("outside", "2024-01-01")]
    periods = labels.activity_periods(table, observed_until=day(OBS))
    assert periods["client_id"].tolist() == ["inside", "outside", "outside"]
    assert periods["end"].isna().tolist() == [True, False, True]


def test_mid_term_cancellation_is_churn_on_cancelled_at() -> None:
    table = contracts(("a", "2023-01-01", "2025-01-01", 100, "2023-06-15"))
    assert churns(table) == [("a", "2023-06-15")]


def test_rolling_contract_never_churns_unless_cancelled() -> None:
    table = contracts(
        ("open", "2020-01-01", None, 100), ("cut", "2020-01-01", None, 100, "2024-03-01")
    )
    assert churns(table) == [("cut", "2024-03-01")]
    periods = labels.activity_periods(table, observed_until=day(OBS)).set_index("client_id")
    assert pd.isna(periods.loc["open", "end"])
    assert not periods.loc["open", "churned"] and not periods.loc["open", "pending"]


def test_resigning_after_grace_gives_two_periods_and_two_churns() -> None:
    table = contracts(
        ("a", "2022-01-01", "2022-07-01", 100),
        ("a", "2023-01-01", "2023-07-01", 100),
    )
    periods = labels.activity_periods(table, observed_until=day(OBS))
    assert len(periods) == 2 and periods["churned"].all()
    assert churns(table) == [("a", "2022-07-01"), ("a", "2023-07-01")]


def test_pending_end_is_not_churn_until_grace_has_passed() -> None:
    table = contracts(("a", "2023-01-01", "2024-01-01", 100))
    # the grace period runs to 2024-01-31 inclusive; the data must include that day
    assert churns(table, obs="2024-01-31") == []
    periods = labels.activity_periods(table, observed_until=day("2024-01-31"))
    assert periods["pending"].tolist() == [True] and periods["churned"].tolist() == [False]
    assert periods["end"].tolist() == [day("2024-01-01")]
    assert churns(table, obs="2024-02-01") == [("a", "2024-01-01")]


def test_contract_term_ending_after_the_data_is_pending() -> None:
    table = contracts(("a", "2023-01-01", "2027-01-01", 100))
    periods = labels.activity_periods(table, observed_until=day(OBS))
    assert periods["pending"].tolist() == [True]
    assert churns(table) == []


def test_overlapping_contracts_one_ending_is_contraction_not_churn() -> None:
    table = contracts(
        ("a", "2023-01-01", "2024-01-01", 100),  # service line one ends
        ("a", "2023-06-01", None, 40),  # service line two continues
    )
    assert churns(table) == []
    events = labels.contraction_events(table)
    assert events.to_dict("records") == [
        {"client_id": "a", "at": day("2024-01-01"), "value_before": 140.0, "value_after": 40.0}
    ]


def test_renewal_at_lower_value_is_contraction_back_to_back_or_after_a_gap() -> None:
    table = contracts(
        ("tight", "2023-01-01", "2024-01-01", 100),
        ("tight", "2024-01-01", None, 70),
        ("gap", "2023-01-01", "2024-01-01", 100),
        ("gap", "2024-01-21", None, 70),  # inside grace: the gap's zero is not a value
        ("same", "2023-01-01", "2024-01-01", 100),
        ("same", "2024-01-21", None, 100),
    )
    events = labels.contraction_events(table)
    assert events["client_id"].tolist() == ["gap", "tight"]
    assert events["at"].tolist() == [day("2024-01-21"), day("2024-01-01")]
    assert events["value_before"].tolist() == [100.0, 100.0]
    assert events["value_after"].tolist() == [70.0, 70.0]
    assert churns(table) == []


def test_renewal_after_grace_at_lower_value_is_churn_not_contraction() -> None:
    table = contracts(("a", "2023-01-01", "2024-01-01", 100), ("a", "2024-03-01", None, 70))
    assert churns(table) == [("a", "2024-01-01")]
    assert labels.contraction_events(table).empty


def test_contract_cancelled_on_its_start_covers_nothing() -> None:
    table = contracts(("a", "2023-01-01", None, 100, "2023-01-01"))
    assert labels.activity_periods(table, observed_until=day(OBS)).empty
    assert labels.active_clients(table, day("2023-06-01")).empty


def test_grace_days_is_a_parameter() -> None:
    table = contracts(("a", "2023-01-01", "2024-01-01", 100), ("a", "2024-01-11", None, 100))
    assert churns(table, grace=10) == []
    assert churns(table, grace=9) == [("a", "2024-01-01")]


# --- labels ------------------------------------------------------------------------------------


def test_churn_exactly_at_the_horizon_end_is_in_the_window() -> None:
    row = label_row(contracts(("a", "2023-01-01", "2024-03-31", 100)), "2024-01-01")
    assert row["churned"] == 1
    assert row["churn_date"] == day("2024-03-31")  # 2024-01-01 + 90 days
    assert row["revenue_lost"] == 1200.0
    assert not row["contraction"]


def test_churn_the_day_after_the_horizon_is_outside_the_window() -> None:
    row = label_row(contracts(("a", "2023-01-01", "2024-04-01", 100)), "2024-01-01")
    assert row["churned"] == 0 and pd.isna(row["churn_date"]) and row["revenue_lost"] == 0.0


def test_churn_on_as_of_is_not_in_the_window() -> None:
    table = contracts(("a", "2023-01-01", "2024-01-01", 100))
    dates = [day("2023-12-31"), day("2024-01-01")]
    out = labels.build_labels(crm(table), dates, observed_until=day(OBS))
    assert out["as_of"].tolist() == [day("2023-12-31")]  # gone on as_of: no snapshot, no label
    assert out["churned"].tolist() == [1]


def test_labels_contraction_and_revenue_lost() -> None:
    table = contracts(("a", "2023-01-01", "2024-02-01", 100), ("a", "2023-01-01", None, 50))
    row = label_row(table, "2024-01-01")
    assert row["churned"] == 0 and row["contraction"]
    assert row["monthly_value"] == 150.0 and row["revenue_lost"] == 1200.0


def test_renewal_gap_inside_horizon_is_neither_churn_nor_contraction() -> None:
    table = contracts(("a", "2023-01-01", "2024-02-01", 100), ("a", "2024-02-20", None, 100))
    row = label_row(table, "2024-01-01", horizon=40)  # horizon ends inside the renewal gap
    assert row["churned"] == 0 and not row["contraction"] and row["revenue_lost"] == 0.0


def test_censoring_near_the_end_of_data() -> None:
    table = contracts(("a", "2023-01-01", None, 100))
    # as_of + 90 + 30 days = 2024-04-30: known only when the data includes that day
    kept = label_row(table, "2024-01-01", obs="2024-05-01")
    cut = label_row(table, "2024-01-01", obs="2024-04-30")
    assert not kept["censored"] and kept["churned"] == 0 and not kept["contraction"]
    assert cut["censored"] and pd.isna(cut["churned"]) and pd.isna(cut["contraction"])
    assert pd.isna(cut["revenue_lost"]) and cut["monthly_value"] == 100.0


def test_censored_snapshot_hides_a_churn_it_might_know() -> None:
    row = label_row(contracts(("a", "2023-01-01", "2024-01-10", 100)), "2024-01-01", "2024-03-01")
    assert row["censored"] and pd.isna(row["churned"]) and pd.isna(row["churn_date"])


def test_build_labels_schema_order_and_dedup() -> None:
    table = contracts(("b", "2023-01-01", None, 10), ("a", "2023-01-01", None, 20))
    dates = [day("2023-03-01"), day("2023-02-01"), day("2023-03-01")]
    out = labels.build_labels(crm(table), dates, observed_until=day("2023-12-31"))
    assert list(out.columns) == [
        "client_id",
        "as_of",
        "churned",
        "censored",
        "churn_date",
        "contraction",
        "monthly_value",
        "revenue_lost",
    ]
    assert out[["client_id", "as_of"]].astype(str).values.tolist() == [
        ["a", "2023-02-01 00:00:00+00:00"],
        ["b", "2023-02-01 00:00:00+00:00"],
        ["a", "2023-03-01 00:00:00+00:00"],
        ["b", "2023-03-01 00:00:00+00:00"],
    ]
    dtypes = out.dtypes.astype(str).to_dict()
    assert dtypes["as_of"] == TS and dtypes["churn_date"] == TS
    assert dtypes["churned"] == "Int8" and dtypes["contraction"] == "boolean"
    assert dtypes["client_id"] == "str" and dtypes["censored"] == "bool"


def test_no_contracts_gives_empty_typed_results() -> None:
    empty = contracts()
    out = labels.build_labels(crm(empty), [day("2024-01-01")], observed_until=day(OBS))
    assert out.empty and str(out["churned"].dtype) == "Int8"
    assert labels.activity_periods(empty).empty and labels.churn_dates(empty).empty
    assert labels.contraction_events(empty).empty
    assert labels.active_clients(empty, day("2024-01-01")).empty
    assert labels.snapshot_dates(crm(empty)).empty


# --- active clients, observation end, snapshot dates -------------------------------------------


def test_active_clients_boundary_days() -> None:
    table = contracts(
        ("ends_today", "2023-01-01", "2024-01-01", 100),
        ("ends_tomorrow", "2023-01-01", "2024-01-02", 100),
        ("starts_today", "2024-01-01", None, 100),
        ("started_yesterday", "2023-12-31", None, 100),
        ("renews_today", "2023-01-01", "2024-01-01", 100),
        ("renews_today", "2024-01-01", "2025-01-01", 100),
        ("cancelled_today", "2023-01-01", None, 100, "2024-01-01"),
        ("in_renewal_gap", "2023-01-01", "2023-12-20", 100),
        ("in_renewal_gap", "2024-01-05", None, 100),
    )
    active = labels.active_clients(table, day("2024-01-01"))
    assert active.tolist() == ["ends_tomorrow", "renews_today", "started_yesterday"]


def test_observation_end_ignores_future_end_dates_and_reads_all_tables() -> None:
    table = contracts(("a", "2023-01-01", "2030-01-01", 100))
    assert labels.observation_end(crm(table)) == day("2023-01-02")
    invoices = pd.DataFrame(
        {
            "invoice_id": ["i1"],
            "client_id": ["a"],
            "issued_at": pd.Series([day("2024-05-01")], dtype=TS),
            "due_at": pd.Series([day("2031-01-01")], dtype=TS),  # a due date is not history
            "amount": [10.0],
            "paid_at": pd.Series([day("2024-05-20 15:30")], dtype=TS),
        }
    )
    assert labels.observation_end(crm(table, invoices=invoices)) == day("2024-05-21")


def test_observation_end_without_timestamps_is_an_error() -> None:
    with pytest.raises(ValueError, match="no timestamps"):
        labels.observation_end(crm(contracts()))


def test_snapshot_dates_are_month_starts_after_the_first_start() -> None:
    data = crm(contracts(("a", "2023-01-01", None, 100), ("b", "2023-02-15", None, 100)))
    dates = labels.snapshot_dates(data, observed_until=day("2023-05-01"))
    assert dates.strftime("%Y-%m-%d").tolist() == [
        "2023-02-01",
        "2023-03-01",
        "2023-04-01",
        "2023-05-01",
    ]
    assert str(dates.dtype) == TS


def test_negative_days_and_missing_starts_are_rejected() -> None:
    with pytest.raises(ValueError, match="grace_days"):
        labels.activity_periods(contracts(), grace_days=-1)
    with pytest.raises(ValueError, match="start_date"):
        labels.activity_periods(contracts(("a", None, None, 100)))


def test_inputs_are_not_mutated() -> None:
    table = contracts(
        ("a", "2023-01-01", "2024-01-01", 100, "2023-06-01"),
        ("a", "2023-06-10", None, 50),
        ("b", "2023-01-01", None, 70),
    )
    data = crm(table)
    before = {name: df.copy() for name, df in data.tables().items()}
    labels.coverage(table)
    labels.activity_periods(table)
    labels.churn_dates(table)
    labels.contraction_events(table)
    labels.active_clients(table, day("2023-07-01"))
    labels.build_labels(data, labels.snapshot_dates(data))
    for name, df in data.tables().items():
        pd.testing.assert_frame_equal(df, before[name])


# --- the vectorised code against a day-by-day reading of the definitions ----------------------


def random_contracts(seed: int, n_clients: int = 40) -> pd.DataFrame:
    """Random day-aligned timelines with renewals, gaps, overlaps, cancellations, rolling terms."""
    rng = np.random.default_rng(seed)
    base, rows = pd.Timestamp("2022-01-01"), []
    for c in range(n_clients):
        start = int(rng.integers(0, 300))
        for _ in range(int(rng.integers(1, 5))):
            length = int(rng.integers(0, 400))
            end = None if rng.random() < 0.2 else base + pd.Timedelta(days=start + length)
            cancel = base + pd.Timedelta(days=start + int(rng.integers(0, 300)))
            rows.append(
                (
                    f"c{c:02d}",
                    str(base + pd.Timedelta(days=start)),
                    str(end) if end is not None else None,
                    float(rng.choice([0, 50, 100, 150])),
                    str(cancel) if rng.random() < 0.2 else None,
                )
            )
            start += length + int(rng.integers(-60, 60))
    return contracts(*rows)


def reference(table: pd.DataFrame, dates: list[int], grace: int, horizon: int, obs: int) -> dict:
    """Churns, contractions and labels computed day by day (days since 2022-01-01)."""
    base, days = day("2022-01-01"), 2000
    out: dict = {"churns": [], "contractions": [], "labels": []}
    for client, group in labels.coverage(table).groupby("client_id"):
        n, value = np.zeros(days, int), np.zeros(days)
        for s, e, v in zip(group["start"], group["end"], group["monthly_value"], strict=True):
            stop = days if pd.isna(e) else (e - base).days
            n[(s - base).days : stop] += 1
            value[(s - base).days : stop] += v
        last_covered = np.maximum.accumulate(np.where(n > 0, np.arange(days), 0))
        ends = [d for d in range(1, days) if n[d - 1] and not n[d]]
        known = {d for d in ends if not n[d : d + grace + 1].any() and d + grace < obs}
        out["churns"] += [(client, d) for d in sorted(known)]
        for d in range(1, days):
            prev = last_covered[d - 1]
            if n[d] and n[prev] and d - prev - 1 <= grace and value[d] < value[prev]:
                out["contractions"].append((client, d, value[prev], value[d]))
        for a in dates:
            if not (n[a - 1] and n[a]):
                continue
            censored = a + horizon + grace >= obs
            churned = any(a < d <= a + horizon for d in known)
            then = 0.0 if churned else value[last_covered[a + horizon]]
            if censored:
                out["labels"].append((client, a, True, None, None, value[a], None))
                continue
            contracted = not churned and then < value[a]
            lost = 12 * max(value[a] - then, 0.0)
            out["labels"].append((client, a, False, int(churned), contracted, value[a], lost))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_day_by_day_reference(seed: int) -> None:
    table = random_contracts(seed)
    base, obs, grace, horizon = day("2022-01-01"), 900, 30, 90
    dates = list(range(30, 900, 30))
    expected = reference(table, dates, grace, horizon, obs)
    until = base + pd.Timedelta(days=obs)

    got_churns = labels.churn_dates(table, grace, until)
    assert [(c, (d - base).days) for c, d in got_churns.itertuples(index=False)] == sorted(
        expected["churns"]
    )
    events = labels.contraction_events(table, grace)
    assert [
        (c, (at - base).days, b, a) for c, at, b, a in events.itertuples(index=False)
    ] == sorted(expected["contractions"])

    as_of = [base + pd.Timedelta(days=d) for d in dates]
    got = labels.build_labels(crm(table), as_of, horizon, grace, until)
    rows = [
        (
            r.client_id,
            (r.as_of - base).days,
            r.censored,
            None if pd.isna(r.churned) else int(r.churned),
            None if pd.isna(r.contraction) else bool(r.contraction),
            r.monthly_value,
            None if pd.isna(r.revenue_lost) else r.revenue_lost,
        )
        for r in got.itertuples(index=False)
    ]
    assert sorted(rows, key=lambda r: (r[0], r[1])) == sorted(expected["labels"])
    assert got["censored"].any() and (got["churned"] == 1).any() and got["contraction"].any()
