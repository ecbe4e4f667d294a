"""Custom features: the attributes a mapping declares on clients and contracts, their values at
as_of, parity of every path (bulk, one date, one client, chunks, API records), and their errors."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnguard.domain.churn import contract_stops
from churnguard.domain.contract import Attribute, CRMData, Kind, from_frames
from churnguard.features import engine
from churnguard.features.catalog import (
    FeatureNameError,
    FeatureSet,
    MissingAttributeError,
    feature_name_problems,
    feature_set_for,
)
from churnguard.features.engine import compute_features, feature_columns
from churnguard.features.records import client_arrays, records_model
from churnguard.modeling.model import ChurnModel
from churnguard.scoring.directions import Directions
from churnguard.scoring.explain import reason
from tests.factories import as_of_dates, random_crm, records_body

ATTRIBUTES = (
    Attribute("clients", "seats", Kind.NUMBER, direction="less_risk"),
    Attribute("clients", "plan_tier", Kind.CATEGORY),
    Attribute("contracts", "discount", Kind.NUMBER, label="Discount"),
    Attribute("contracts", "billing", Kind.CATEGORY),
)
NAMES = ["client_seats", "client_plan_tier", "contract_discount", "contract_billing"]
Records = records_model(max_rows=5000)


def with_attributes(data: CRMData, seed: int = 0) -> CRMData:
    """The data with random values of ATTRIBUTES (some empty), and contracts that start together."""
    rng = np.random.default_rng(seed)
    clients, contracts = data.clients, data.contracts
    n, k = len(clients), len(contracts)
    start = contracts["start_date"].copy()
    twins = contracts.groupby("client_id", observed=True).head(2).index[::2]
    start[twins] = start[twins].dt.floor("D")  # ties: started the same moment as ...
    same = contracts.loc[twins].groupby("client_id", observed=True)["start_date"].transform("min")
    start[same.index] = same.dt.floor("D")  # ... another of the client's contracts
    frames = {
        **data.tables(),
        "clients": clients.assign(
            client_seats=pd.Series(rng.integers(1, 60, n), dtype=float).mask(rng.random(n) < 0.2),
            client_plan_tier=pd.Categorical(rng.choice(["basic", "pro", ""], n)).remove_categories(
                [""]
            ),
        ),
        "contracts": contracts.assign(
            start_date=start,
            contract_discount=pd.Series(rng.integers(0, 30, k) / 100).mask(rng.random(k) < 0.2),
            contract_billing=pd.Categorical(rng.choice(["monthly", "annual"], k)),
        ),
    }
    return from_frames(frames, ATTRIBUTES)


@pytest.fixture(scope="module")
def data() -> CRMData:
    return with_attributes(random_crm(n_clients=50, seed=11))


def _snapshots(data: CRMData, dates: list[pd.Timestamp]) -> pd.DataFrame:
    ids = data.clients["client_id"]
    return pd.DataFrame(
        {
            "client_id": np.tile(ids.to_numpy(), len(dates)),
            "as_of": pd.Series(np.repeat(dates, len(ids))).dt.as_unit("s"),
        }
    )


def _plain(frame: pd.DataFrame) -> list[list[Any]]:
    return frame[NAMES].astype(object).where(frame[NAMES].notna(), None).values.tolist()


def _in_force_reference(data: CRMData, client_id: str, as_of: pd.Timestamp) -> pd.Series | None:
    """The contract a plain reading of the rule picks: in force at as_of, the latest started,
    the later row when two started together."""
    c = data.contracts.assign(stop=contract_stops(data.contracts), row=range(len(data.contracts)))
    mine = c[(c["client_id"] == client_id) & (c["start_date"] < as_of)]
    mine = mine[mine["stop"].isna() | (mine["stop"] >= as_of)]
    return None if mine.empty else mine.sort_values(["start_date", "row"]).iloc[-1]


def test_values_are_the_clients_and_the_contract_in_force(data: CRMData) -> None:
    dates = as_of_dates(3)
    features = compute_features(data, _snapshots(data, dates), feature_set_for(data))
    assert list(features.columns[-4:]) == NAMES
    clients = data.clients.set_index("client_id")
    picked = 0
    for row in features.itertuples():
        client = clients.loc[row.client_id]
        assert row.client_seats == client["client_seats"] or pd.isna(client["client_seats"])
        assert str(row.client_plan_tier) == str(client["client_plan_tier"])
        contract = _in_force_reference(data, row.client_id, row.as_of)
        if contract is None:
            assert pd.isna(row.contract_discount) and pd.isna(row.contract_billing)
            continue
        picked += 1
        d = contract["contract_discount"]
        assert row.contract_discount == d or (pd.isna(d) and pd.isna(row.contract_discount))
        assert row.contract_billing == contract["contract_billing"]
    assert picked > 40  # the data must exercise the rule


@pytest.mark.parametrize("dates", [1, 3])  # the scatter executor, the sorted one
def test_one_client_and_chunks_equal_the_batch_bit_for_bit(
    data: CRMData, dates: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    snaps = _snapshots(data, as_of_dates(dates))
    fs = feature_set_for(data)
    batch = compute_features(data, snaps, fs)
    for client_id in data.clients["client_id"][:12]:  # one client: the dense executor
        rows = snaps["client_id"] == client_id
        alone = compute_features(data.for_clients([client_id]), snaps[rows], fs)
        assert _plain(alone) == _plain(batch[rows]), client_id
    monkeypatch.setattr(engine, "CHUNK_ROWS", 2_000)  # several chunks of clients
    assert _plain(compute_features(data, snaps, fs)) == _plain(batch)


def _body(data: CRMData, client_id: str) -> dict[str, Any]:
    """A client's records with its attributes as the API takes them: under ``attributes``."""
    plain = from_frames({n: df for n, df in data.tables().items()})  # the contract's columns
    body = records_body(plain, client_id)
    one = data.for_clients([client_id])
    seats, tier = one.clients[["client_seats", "client_plan_tier"]].iloc[0]
    body["client"]["attributes"] = {
        "seats": None if pd.isna(seats) else float(seats),
        **({} if pd.isna(tier) else {"plan_tier": str(tier)}),
    }
    for row, (d, b) in zip(
        body["contracts"],
        one.contracts[["contract_discount", "contract_billing"]].values,
        strict=True,
    ):
        row["attributes"] = {"discount": None if pd.isna(d) else float(d), "billing": str(b)}
    return body


def test_api_records_give_the_same_attribute_values_as_the_tables(data: CRMData) -> None:
    fs = feature_set_for(data)
    as_of = as_of_dates(4)[2]
    for client_id in data.clients["client_id"][:10]:
        snaps = pd.DataFrame({"client_id": [client_id], "as_of": [as_of]})
        expected = compute_features(data, snaps, fs)
        records = Records.model_validate(_body(data, client_id))
        got = feature_columns(
            client_arrays(records, fs.attributes),
            np.array([0]),
            np.array([int(as_of.timestamp())]),
            fs,
        )
        assert [got[n][0] if pd.notna(got[n][0]) else None for n in NAMES] == _plain(expected)[0]


def test_api_records_with_an_unknown_attribute_or_a_wrong_kind_are_refused(data: CRMData) -> None:
    client_id = data.clients["client_id"][0]
    body = _body(data, client_id)
    body["client"]["attributes"] = {"seat": 3}
    with pytest.raises(ValueError, match="clients: unknown attribute 'seat' \\(the model reads"):
        client_arrays(Records.model_validate(body), ATTRIBUTES)
    body["client"]["attributes"] = {"seats": "twelve"}
    with pytest.raises(ValueError, match="attribute 'seats' is a number"):
        client_arrays(Records.model_validate(body), ATTRIBUTES)


def test_data_without_a_models_attribute_is_a_clear_error(data: CRMData) -> None:
    fs = feature_set_for(data)
    plain = random_crm(n_clients=5, seed=1)
    snaps = _snapshots(plain, as_of_dates(1))
    with pytest.raises(
        MissingAttributeError, match="the model reads the clients attribute 'seats'"
    ):
        compute_features(plain, snaps, fs)
    other = (Attribute("clients", "seats", Kind.CATEGORY), *ATTRIBUTES[1:])
    with pytest.raises(
        MissingAttributeError, match="as a number; the mapping declares it a category"
    ):
        compute_features(from_frames(data.tables(), other), _snapshots(data, as_of_dates(1)), fs)


def test_an_attribute_named_like_a_built_in_feature_is_refused() -> None:
    clash = Attribute(
        "clients", "age_days", Kind.NUMBER, where="m.yaml line 4 (attributes.clients.age_days)"
    )
    with pytest.raises(FeatureNameError, match=r"m.yaml line 4 .*client_age_days, a built-in"):
        FeatureSet((), (clash,))
    data = from_frames(random_crm(n_clients=3).tables(), (clash,))
    (problem,) = feature_name_problems(data)
    assert str(problem).startswith("m.yaml line 4 (attributes.clients.age_days): the attribute")


def test_reasons_in_plain_words_and_categories_never_a_why(data: CRMData) -> None:
    fs = feature_set_for(data)
    seats, tier, discount, billing = (fs.get(n) for n in NAMES)
    assert reason(seats, 12.0) == "Seats: 12"
    assert reason(discount, 0.15) == "Discount: 0.15"
    assert reason(discount, 12500.0) == "Discount: 12,500"
    assert reason(tier, "basic") == "Plan tier: basic"
    assert tier.categorical and billing.categorical and tier.direction == "context"
    directions = Directions.of(NAMES, fs)
    assert directions.reasons.tolist() == [True, False, False, False]  # a direction is declared


def test_a_pickled_model_keeps_the_attributes_it_was_trained_with(data: CRMData) -> None:
    fs = feature_set_for(data)
    model = ChurnModel(fs, "logistic", None, None, 90, fs.names, {})  # type: ignore[arg-type]
    restored = pickle.loads(pickle.dumps(model))
    assert restored.feature_set.attributes == ATTRIBUTES
    assert restored.feature_set.names == fs.names


def test_attributes_a_model_does_not_read_are_said_not_read(
    data: CRMData, caplog: pytest.LogCaptureFixture
) -> None:
    without = FeatureSet(feature_set_for(data).event_types)  # a model trained before them
    features = compute_features(data, _snapshots(data, as_of_dates(1)), without)
    assert not set(NAMES) & set(features.columns)
    assert "attributes not read (the model was trained without them" in caplog.text
    assert "client_plan_tier, client_seats, contract_billing, contract_discount" in caplog.text
