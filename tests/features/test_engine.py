"""Features: values against an independent pandas implementation, parity, and no leakage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from bench.baseline_features import baseline_features
from churnguard.domain.contract import TABLES, CRMData, Kind, from_frames
from churnguard.features import engine
from churnguard.features.catalog import FeatureSet, feature_set_for
from churnguard.features.engine import compute_features
from tests.factories import as_of_dates, random_crm


def _snapshots(data: CRMData, dates: list[pd.Timestamp]) -> pd.DataFrame:
    ids = data.clients["client_id"]
    return pd.DataFrame(
        {
            "client_id": np.tile(ids.to_numpy(), len(dates)),
            "as_of": pd.Series(np.repeat(dates, len(ids))).dt.as_unit("s"),
        }
    )


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, exact: bool) -> None:
    assert list(a.columns) == list(b.columns)
    for col in a.columns[2:]:
        x, y = a[col], b[col]
        if isinstance(x.dtype, pd.CategoricalDtype):
            assert (
                x.astype(object).fillna("<na>").tolist() == y.astype(object).fillna("<na>").tolist()
            ), col
        elif exact:
            assert np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True), col
        else:
            np.testing.assert_allclose(
                x.to_numpy(float), y.to_numpy(float), rtol=1e-9, atol=1e-5, err_msg=col
            )


@pytest.fixture(scope="module")
def data() -> CRMData:
    return random_crm(n_clients=60, seed=3)


def test_engine_matches_plain_pandas_implementation(data: CRMData) -> None:
    snaps = _snapshots(data, as_of_dates(5))
    fs = feature_set_for(data)
    engine = compute_features(data, snaps, fs)
    reference = baseline_features(data, snaps, fs)
    _assert_same(engine, reference, exact=False)
    # the data must exercise the features, or the comparison proves little
    busy = engine[fs.names].select_dtypes("number")
    assert (busy.notna() & (busy != 0)).any().mean() > 0.95


def test_one_client_equals_its_row_in_the_batch(data: CRMData) -> None:
    snaps = _snapshots(data, as_of_dates(3))
    fs = feature_set_for(data)
    batch = compute_features(data, snaps, fs)
    for client_id in data.clients["client_id"][:15]:
        rows = snaps["client_id"] == client_id
        alone = compute_features(data.for_clients([client_id]), snaps[rows], fs)
        _assert_same(alone.reset_index(drop=True), batch[rows].reset_index(drop=True), exact=True)


def _shift_future(
    t: pd.Series, as_of: pd.Timestamp, rng: np.random.Generator, nullable: bool
) -> pd.Series:
    """Timestamps at/after as_of moved elsewhere at/after as_of; optional ones sometimes emptied."""
    future = t >= as_of
    offsets = pd.to_timedelta(rng.integers(0, 400 * 86_400, len(t)), unit="s")
    moved = pd.Series(as_of + offsets, index=t.index).dt.as_unit("s")
    if nullable:
        moved = moved.mask(rng.random(len(t)) < 0.3)
    return t.mask(future, moved)


def _tamper_after(data: CRMData, as_of: pd.Timestamp, seed: int) -> CRMData:
    """Change everything timestamped at or after as_of, and add rows after it."""
    rng = np.random.default_rng(seed)
    frames: dict[str, pd.DataFrame] = {}
    extra = random_crm(n_clients=len(data.clients), seed=seed + 100)
    for name, df in data.tables().items():
        spec = TABLES[name]
        df = df.copy()
        if spec.time is not None:
            future_rows = df[spec.time] >= as_of
            for col in spec.columns:
                if col.kind == Kind.NUMBER:
                    df.loc[future_rows, col.name] = rng.integers(0, 10, future_rows.sum())
        for col in spec.columns:
            # end_date is the contract term, known when the contract is signed
            if col.kind == Kind.DATETIME and col.name != "end_date" and name != "clients":
                df[col.name] = _shift_future(df[col.name], as_of, rng, not col.required)
        if name != "clients" and spec.time is not None:
            added = extra.table(name)
            added = added[added[spec.time] >= as_of].copy()
            if spec.key:
                added[spec.key] = "new-" + added[spec.key].astype("str")
            added["client_id"] = added["client_id"].astype("str")
            df = pd.concat(
                [df.assign(client_id=df["client_id"].astype("str")), added], ignore_index=True
            )
            for a, b in (("start_date", "cancelled_at"), ("opened_at", "resolved_at")):
                if a in df and b in df:  # keep the contract's ordering rules
                    df[b] = df[b].mask(df[b] < df[a], df[a])
        frames[name] = df
    return from_frames(frames)


@pytest.mark.parametrize("position", [1, 2, 3])
def test_rows_at_or_after_as_of_change_nothing(data: CRMData, position: int) -> None:
    as_of = as_of_dates(5)[position]
    snaps = _snapshots(data, [as_of])
    fs = feature_set_for(data)
    before = compute_features(data, snaps, fs)
    tampered = _tamper_after(data, as_of, seed=position)
    assert tampered.n_rows > data.n_rows
    _assert_same(compute_features(tampered, snaps, fs), before, exact=True)


def test_rows_before_as_of_do_change_features(data: CRMData) -> None:
    as_of = as_of_dates(5)[2]
    snaps = _snapshots(data, [as_of])
    fs = feature_set_for(data)
    earlier = _tamper_after(data, as_of - pd.Timedelta(days=60), seed=9)
    changed = compute_features(earlier, snaps, fs)[fs.names].select_dtypes("number")
    before = compute_features(data, snaps, fs)[fs.names].select_dtypes("number")
    assert not np.array_equal(changed.to_numpy(), before.to_numpy(), equal_nan=True)


def test_a_client_with_only_a_contract_gets_zero_counts_and_missing_recency() -> None:
    data = from_frames(
        {
            "clients": pd.DataFrame({"client_id": pd.Series(["solo"], dtype="str")}),
            "contracts": pd.DataFrame(
                {
                    "contract_id": pd.Series(["k"], dtype="str"),
                    "client_id": ["solo"],
                    "start_date": pd.Series(pd.to_datetime(["2024-01-01"], utc=True)).dt.as_unit(
                        "s"
                    ),
                    "monthly_value": [1000.0],
                }
            ),
        }
    )
    snaps = pd.DataFrame({"client_id": ["solo"], "as_of": pd.to_datetime(["2024-03-01"], utc=True)})
    row = compute_features(data, snaps, FeatureSet()).iloc[0]
    assert row["contacts_90d"] == 0 and row["open_disputes"] == 0
    assert np.isnan(row["days_since_contact"]) and np.isnan(row["nps_last"])
    assert row["monthly_value"] == 1000.0 and row["active_contracts"] == 1
    assert row["rolling_contracts"] == 1 and np.isnan(row["days_to_contract_end"])
    assert row["tenure_days"] == 60


def test_unknown_client_is_a_clear_error(data: CRMData) -> None:
    snaps = pd.DataFrame(
        {"client_id": ["nobody"], "as_of": pd.to_datetime(["2024-03-01"], utc=True)}
    )
    with pytest.raises(KeyError, match="nobody"):
        compute_features(data, snaps)


def test_a_time_the_engine_cannot_encode_is_a_clear_error(data: CRMData) -> None:
    interactions = data.interactions.copy()
    interactions.loc[interactions.index[0], "occurred_at"] = pd.Timestamp("1800-01-01", tz="UTC")
    bad = dataclasses.replace(data, interactions=interactions)
    snaps = pd.DataFrame({"client_id": data.clients["client_id"][:1], "as_of": as_of_dates(1)[0]})
    with pytest.raises(
        ValueError, match=r"interactions\.occurred_at: 1800-01-01T00:00:00 is outside"
    ):
        compute_features(bad, snaps)


def test_inputs_are_not_mutated(data: CRMData) -> None:
    copies = {name: df.copy() for name, df in data.tables().items()}
    compute_features(data, _snapshots(data, as_of_dates(2)))
    for name, df in data.tables().items():
        pd.testing.assert_frame_equal(df, copies[name])


@pytest.mark.parametrize("dates", [1, 3])  # the scatter executor, the sorted one
def test_chunks_of_clients_give_the_same_features(
    data: CRMData, monkeypatch: pytest.MonkeyPatch, dates: int
) -> None:
    snaps = _snapshots(data, as_of_dates(3)[:dates])
    fs = feature_set_for(data)
    whole = compute_features(data, snaps.sample(frac=1, random_state=0), fs)
    monkeypatch.setattr(engine, "CHUNK_ROWS", data.n_rows // 16)  # 4 to 17 chunks of clients
    chunked = compute_features(data, snaps.sample(frac=1, random_state=0), fs)
    _assert_same(chunked, whole, exact=True)


def test_one_date_chunks_of_clients_give_the_same_features(
    data: CRMData, monkeypatch: pytest.MonkeyPatch
) -> None:
    snaps = _snapshots(data, as_of_dates(3)[:1])
    fs = feature_set_for(data)
    whole = compute_features(data, snaps.sample(frac=1, random_state=1), fs)
    monkeypatch.setattr(engine, "CHUNK_ROWS", data.n_rows // (8 * engine.ONE_DATE_CHUNKS))
    chunked = compute_features(data, snaps.sample(frac=1, random_state=1), fs)
    _assert_same(chunked, whole, exact=True)


def test_a_price_rise_and_a_change_of_scope_are_told_apart() -> None:
    def day(*dates: str) -> pd.Series:
        return pd.Series(pd.to_datetime(list(dates), utc=True)).dt.as_unit("s")

    contracts = pd.DataFrame(
        {
            "contract_id": pd.Series(["a1", "a2", "b", "c"], dtype="str"),
            "client_id": ["x"] * 4,
            "service_line": pd.Categorical(["audit", "audit", "payroll", "advisory"]),
            "start_date": day("2023-01-01", "2024-01-01", "2024-03-01", "2022-06-01"),
            "end_date": day("2023-12-31", "2024-12-31", "2025-02-28", "2024-01-31"),
            "monthly_value": [1000.0, 1100.0, 500.0, 300.0],
        }
    )
    clients = pd.DataFrame({"client_id": pd.Series(["x"], dtype="str")})
    data = from_frames({"clients": clients, "contracts": contracts})
    snaps = pd.DataFrame({"client_id": ["x"], "as_of": pd.to_datetime(["2024-06-01"], utc=True)})
    row = compute_features(data, snaps, FeatureSet()).iloc[0]
    assert row["price_change_365d"] == pytest.approx(0.10)  # audit renewed at 1,100 (was 1,000)
    assert row["scope_change_365d"] == pytest.approx(500.0 - 300.0)  # payroll in, advisory out
    assert row["value_change_365d"] == pytest.approx(100.0 + 500.0 - 300.0)  # the two mixed
