"""Tests for synth/business.py: determinism, the contract, files, a business that looks real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnguard.domain.contract import (
    ORDERED_COLUMNS,
    SCORE_RANGES,
    TABLES,
    CRMData,
    Kind,
    dtype_of,
)
from churnguard.domain.rawtable import map_table
from churnguard.domain.validation import validate
from churnguard.synth.business import (
    DEFAULT_START,
    SimulatedBusiness,
    simulate,
    write_demo_data,
)

HORIZON = pd.Timedelta(days=90)
GRACE = pd.Timedelta(days=30)
# Columns recording something that already happened (contract end and invoice due dates may lie
# ahead of the data: they are terms, not events).
HISTORY = {
    "clients": ("client_since",),
    "contracts": ("start_date", "cancelled_at"),
    "interactions": ("occurred_at",),
    "feedback": ("submitted_at",),
    "invoices": ("issued_at", "paid_at", "disputed_at", "dispute_resolved_at"),
    "tickets": ("opened_at", "resolved_at"),
    "events": ("occurred_at",),
}


@pytest.fixture(scope="module")
def biz() -> SimulatedBusiness:
    """The default demo business: 1,000 clients over 36 months."""
    return simulate()


@pytest.fixture(scope="module")
def small() -> SimulatedBusiness:
    return simulate(clients=150, months=14, seed=3)


@pytest.fixture(scope="module")
def snapshots(biz: SimulatedBusiness) -> pd.DataFrame:
    """Labelled truth rows with point-in-time warning signs (rows strictly before as_of)."""
    rows = biz.truth.assign(client_id=biz.truth["client_id"].astype(str))
    rows = rows[rows["as_of"] + HORIZON + GRACE < biz.observed_until].reset_index(drop=True)
    churn = churn_dates(biz.data, biz.observed_until).reindex(rows["client_id"]).to_numpy()
    rows["churned"] = (churn > rows["as_of"]) & (churn <= rows["as_of"] + HORIZON)
    return rows.assign(**warning_signs(biz.data, rows))


# --- helpers: the churn definition and point-in-time signals, computed independently ------------


def ended_at(contracts: pd.DataFrame) -> pd.Series:
    """When each contract stops covering (NaT = rolling and not cancelled)."""
    return contracts["cancelled_at"].fillna(contracts["end_date"])


def active_pairs(data: CRMData, as_of: pd.Timestamp) -> set[str]:
    """Clients covered on as_of: some contract with start < as_of < end (labels.py's rule)."""
    c = data.contracts
    end = ended_at(c).fillna(pd.Timestamp("2200-01-01", tz="UTC"))
    return set(c.loc[(c["start_date"] < as_of) & (end > as_of), "client_id"].astype(str))


def churn_dates(data: CRMData, observed_until: pd.Timestamp) -> pd.Series:
    """Each churned client's churn date: its last coverage ends and the grace period is seen.

    The simulator never brings a client back, so the end of the last contract is the churn date.
    """
    c = data.contracts.assign(client_id=data.contracts["client_id"].astype(str))
    c = c.assign(ended=ended_at(c))
    last = c.groupby("client_id")["ended"].max()
    still_open = c.groupby("client_id")["ended"].apply(lambda s: s.isna().any())
    return last[~still_open & (last + GRACE < observed_until)]


def _last_before(rows: pd.DataFrame, events: pd.DataFrame, time: str, value: str) -> pd.Series:
    """For each (client_id, as_of) row, `value` of the client's latest event strictly before."""
    left = rows[["client_id", "as_of"]].reset_index().sort_values("as_of")
    right = events.assign(client_id=events["client_id"].astype(str)).sort_values(time)
    merged = pd.merge_asof(
        left,
        right[["client_id", time, value]],
        left_on="as_of",
        right_on=time,
        by="client_id",
        allow_exact_matches=False,
    )
    return merged.set_index("index")[value].sort_index()


def _open_counts(
    rows: pd.DataFrame, start: pd.Series, end: pd.Series, ids: pd.Series
) -> np.ndarray:
    """Per row, how many of the client's items started before as_of and had not ended by it."""
    out = np.zeros(len(rows))
    for as_of, idx in rows.groupby("as_of").groups.items():
        is_open = (start < as_of) & ~(end < as_of)
        counts = ids[is_open].astype(str).value_counts()
        out[rows.index.get_indexer(idx)] = counts.reindex(rows.loc[idx, "client_id"]).fillna(0)
    return out


def warning_signs(data: CRMData, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Days since last contact, last NPS, open disputes, overdue invoices, open urgent tickets."""
    last = _last_before(
        rows, data.interactions.assign(at=data.interactions["occurred_at"]), "occurred_at", "at"
    )
    nps = data.feedback[data.feedback["survey"] == "nps"]
    inv, tix = data.invoices, data.tickets
    high = tix[tix["priority"].isin(["high", "urgent"])]
    return {
        "days_since_contact": ((rows["as_of"] - last).dt.total_seconds() / 86_400).to_numpy(),
        "nps_last": _last_before(rows, nps, "submitted_at", "score").to_numpy(),
        "open_disputes": _open_counts(
            rows, inv["disputed_at"], inv["dispute_resolved_at"], inv["client_id"]
        ),
        "overdue_invoices": _open_counts(rows, inv["due_at"], inv["paid_at"], inv["client_id"]),
        "open_urgent_tickets": _open_counts(
            rows, high["opened_at"], high["resolved_at"], high["client_id"]
        ),
    }


def read_back(folder: Path, fmt: str) -> CRMData:
    """Read written files the way a CRM export is read: raw values, then contract validation."""
    raw = {}
    for name in TABLES:
        path = folder / f"{name}.{fmt}"
        frame = (
            pd.read_csv(path, dtype=str, keep_default_na=False)
            if fmt == "csv"
            else pd.read_parquet(path)
        )
        raw[name] = map_table(name, path.name, frame)
    data, report = validate(raw)  # raises on any contract error
    assert not report.problems, [str(p) for p in report.problems]
    return data


def assert_same_data(a: CRMData, b: CRMData) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(a.table(name), b.table(name), obj=name)


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_identical_data(small: SimulatedBusiness) -> None:
    again = simulate(clients=150, months=14, seed=3)
    assert_same_data(small.data, again.data)
    pd.testing.assert_frame_equal(small.truth, again.truth)
    assert small.observed_until == again.observed_until


def test_different_seed_gives_different_data(small: SimulatedBusiness) -> None:
    other = simulate(clients=150, months=14, seed=4)
    assert not small.data.contracts["start_date"].equals(other.data.contracts["start_date"])
    assert not small.data.interactions.equals(other.data.interactions)
    assert not small.truth["true_probability"].equals(other.truth["true_probability"])


def test_same_seed_writes_byte_identical_csv_files(tmp_path: Path) -> None:
    first = write_demo_data(tmp_path / "a", clients=120, months=12, seed=5)
    write_demo_data(tmp_path / "b", clients=120, months=12, seed=5)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([f"{t}.csv" for t in TABLES] + ["true_churn_probability.csv"])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert len(first.data.interactions) > 0


# --- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_written_files_read_back_equal(tmp_path: Path, fmt: str) -> None:
    written = write_demo_data(tmp_path / "demo", clients=150, months=14, seed=3, fmt=fmt)
    assert_same_data(read_back(tmp_path / "demo", fmt), written.data)
    path = tmp_path / "demo" / f"true_churn_probability.{fmt}"
    truth = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    pd.testing.assert_series_equal(truth["true_probability"], written.truth["true_probability"])
    as_of = pd.to_datetime(truth["as_of"], utc=True).dt.as_unit("s")
    pd.testing.assert_series_equal(as_of, written.truth["as_of"], check_names=False)


def test_rejects_arguments_it_cannot_honour(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1st of a month"):
        simulate(clients=10, months=3, start=pd.Timestamp("2023-01-15", tz="UTC"))
    with pytest.raises(ValueError, match="clients"):
        simulate(clients=0, months=3)
    with pytest.raises(ValueError, match="fmt"):
        write_demo_data(tmp_path, clients=10, months=3, fmt="xlsx")  # type: ignore[arg-type]


# --- the data contract --------------------------------------------------------------------------


def test_every_table_has_the_contract_columns_and_dtypes(biz: SimulatedBusiness) -> None:
    client_ids = pd.Index(biz.data.clients["client_id"])
    for name, spec in TABLES.items():
        df = biz.data.table(name)
        assert tuple(df.columns) == spec.column_names, name
        for col in spec.columns:
            if name != "clients" and col.name == "client_id":  # categorical over the clients
                assert list(df[col.name].cat.categories) == list(client_ids), name
            else:
                assert df[col.name].dtype == dtype_of(col), (name, col.name, df[col.name].dtype)
            if col.required:
                assert df[col.name].notna().all(), (name, col.name)
            if col.non_negative:
                assert (df[col.name].dropna() >= 0).all(), (name, col.name)
            if col.kind == Kind.CHOICE:
                assert set(df[col.name].dropna()) <= set(col.choices), (name, col.name)
        if spec.key:
            assert df[spec.key].is_unique, name
        assert len(df) > 0, name


def test_rows_are_consistent_and_inside_the_observed_period(biz: SimulatedBusiness) -> None:
    until = biz.observed_until
    assert until == until.normalize() and str(until.tz) == "UTC"
    for name, pairs in ORDERED_COLUMNS.items():
        df = biz.data.table(name)
        for early, late in pairs:
            both = df[early].notna() & df[late].notna()
            assert (df.loc[both, late] >= df.loc[both, early]).all(), (name, early, late)
    for name, columns in HISTORY.items():
        for col in columns:
            assert (biz.data.table(name)[col].dropna() < until).all(), (name, col)
    inv = biz.data.invoices
    assert inv["dispute_resolved_at"].isna()[inv["disputed_at"].isna()].all()
    fb = biz.data.feedback
    for survey, (low, high) in SCORE_RANGES.items():
        score = fb.loc[fb["survey"] == survey, "score"]
        assert score.between(low, high).all() and (score % 1 == 0).all(), survey


def test_truth_covers_exactly_the_active_clients_each_month(biz: SimulatedBusiness) -> None:
    truth = biz.truth
    assert list(truth.columns) == ["client_id", "as_of", "true_probability"]
    assert str(truth["as_of"].dtype) == "datetime64[s, UTC]"
    assert truth["true_probability"].between(0, 1).all()
    months = pd.date_range(DEFAULT_START, biz.observed_until, freq="MS", inclusive="left")
    assert sorted(truth["as_of"].unique()) == list(months[1:])
    for as_of, rows in truth.groupby("as_of"):
        assert set(rows["client_id"]) == active_pairs(biz.data, as_of), as_of


# --- a business that looks real -----------------------------------------------------------------


def test_clients_arrive_over_the_period_and_most_have_a_manager(biz: SimulatedBusiness) -> None:
    clients, contracts = biz.data.clients, biz.data.contracts
    first = contracts.groupby("client_id", observed=True)["start_date"].min()
    assert len(first) == len(clients)  # every client has a contract
    already = (first < DEFAULT_START).mean()
    assert 0.3 < already < 0.6
    assert first[first >= DEFAULT_START].dt.strftime("%Y-%m").nunique() >= 30
    assert (clients["client_since"] <= first.reindex(clients["client_id"]).to_numpy()).all()
    unassigned = clients["account_manager"].isna().mean()
    assert 0.005 < unassigned < 0.08
    managers = clients["account_manager"].dropna()
    assert 15 <= managers.nunique() <= 30  # about one per 40-60 clients
    assert managers.str.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+").all()
    value = contracts.merge(clients, on="client_id").groupby("segment", observed=True)
    median = value["monthly_value"].median()
    assert median["enterprise"] > 2 * median["mid-market"] > 4 * median["small business"]


def test_contracts_renew_lapse_and_change_like_real_ones(biz: SimulatedBusiness) -> None:
    c = biz.data.contracts.sort_values(["client_id", "service_line", "start_date"])
    same_line = c.groupby(["client_id", "service_line"], observed=True)
    gap = (c["start_date"] - same_line["end_date"].shift()).dt.days.dropna()
    renewal_gap = gap[gap <= 30]  # longer: a service line bought again after a break
    assert (renewal_gap == 0).mean() > 0.6 and (renewal_gap > 0).any()
    assert (renewal_gap >= 0).all()
    change = (c["monthly_value"] / same_line["monthly_value"].shift()).dropna()
    assert 0.1 < (change > 1.02).mean() < 0.5  # price increases at renewal
    assert (change < 0.98).any()  # contraction at renewal
    assert (c["cancelled_at"] < c["end_date"]).any()  # mid-term cancellation
    assert c["end_date"].isna().any() and c["auto_renew"].any() and not c["auto_renew"].all()
    terms = (c["end_date"] - c["start_date"]).dt.days.dropna()
    assert terms.between(360, 370).mean() > 0.4 and terms.between(725, 735).any()
    assert biz.data.events["event_type"].nunique() >= 2


def test_billing_and_support_have_loose_ends(biz: SimulatedBusiness) -> None:
    inv, tix = biz.data.invoices, biz.data.tickets
    late = (inv["paid_at"] > inv["due_at"]).mean()
    assert 0.02 < late < 0.2
    disputed = inv["disputed_at"].notna()
    assert 0.005 < disputed.mean() < 0.05
    assert inv.loc[disputed, "dispute_resolved_at"].notna().any()
    assert inv.loc[disputed, "dispute_resolved_at"].isna().any()
    assert tix["resolved_at"].isna().any() and tix["priority"].nunique() == 4
    assert ((inv["due_at"] - inv["issued_at"]).dt.days == 30).all()


def test_churn_rates_are_those_of_a_service_business(
    biz: SimulatedBusiness, snapshots: pd.DataFrame
) -> None:
    churn = churn_dates(biz.data, biz.observed_until)
    for year in (0, 1):
        y0 = DEFAULT_START + pd.DateOffset(years=year)
        active = active_pairs(biz.data, y0)
        left = set(churn[(churn > y0) & (churn <= y0 + pd.DateOffset(years=1))].index)
        assert 0.10 <= len(active & left) / len(active) <= 0.25, year
    assert 0.03 <= snapshots["churned"].mean() <= 0.08


def test_clients_who_churn_showed_warning_signs_first(snapshots: pd.DataFrame) -> None:
    churned, stayed = snapshots[snapshots["churned"]], snapshots[~snapshots["churned"]]
    assert churned["days_since_contact"].mean() > 1.35 * stayed["days_since_contact"].mean()
    assert churned["nps_last"].mean() < stayed["nps_last"].mean() - 0.5
    for sign in ("open_disputes", "overdue_invoices", "open_urgent_tickets"):
        assert churned[sign].mean() > 1.3 * stayed[sign].mean(), sign


def test_truth_is_calibrated_and_ranks_churners_higher(snapshots: pd.DataFrame) -> None:
    y, p = snapshots["churned"], snapshots["true_probability"]
    assert p[y].mean() > 3 * p[~y].mean()
    assert abs(p.mean() - y.mean()) < 0.01
    deciles = pd.qcut(p, 5, labels=False)
    observed = y.groupby(deciles).mean()
    assert observed.is_monotonic_increasing
    assert 0.75 <= roc_auc_score(y, p) <= 0.9  # strong, yet churn stays uncertain


def test_no_single_signal_gives_churn_away(snapshots: pd.DataFrame) -> None:
    y = snapshots["churned"]
    oracle = roc_auc_score(y, snapshots["true_probability"])
    signs = {
        "days_since_contact": snapshots["days_since_contact"],
        "detractor": -snapshots["nps_last"].fillna(7),
        "open_disputes": snapshots["open_disputes"],
        "overdue_invoices": snapshots["overdue_invoices"],
        "open_urgent_tickets": snapshots["open_urgent_tickets"],
    }
    for name, value in signs.items():
        auc = roc_auc_score(y, value.fillna(value.median()))
        assert 0.5 < auc < oracle - 0.1, (name, auc)
