"""A plain pandas implementation of churnguard's feature declarations: the benchmark baseline.

For each as_of date it filters each stream's rows to the window and aggregates them with a pandas
groupby, the way a data scientist would write features by hand. It reads the same declarations as
the engine in ``churnguard.features.catalog`` (streams, filters, windows, aggregations) but none of
its machinery, so the tests also use it as an independent reference for the engine's values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.domain.contract import CRMData
from churnguard.domain.timeaxis import DAY
from churnguard.features.arrays import NAT
from churnguard.features.catalog import (
    STREAMS,
    Agg,
    Custom,
    Diff,
    FeatureSet,
    Formula,
    MeanAge,
    Ratio,
    feature_set_for,
)


class _Frame:
    """Column access on a DataFrame in the shape the stream declarations expect."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df

    def __call__(self, name: str) -> np.ndarray:
        s = self.df[name]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            return s.to_numpy(dtype="datetime64[s]").view(np.int64)
        return s.to_numpy(dtype=np.float64, na_value=np.nan)

    def codes(self, name: str) -> np.ndarray:
        return self.df[name].cat.codes.to_numpy()

    def isin(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        return self.df[name].isin(values).to_numpy()


def _events(data: CRMData, stream_name: str) -> pd.DataFrame:
    """One stream's events as a DataFrame: client, t, one column per value and filter."""
    stream = STREAMS[stream_name]
    table = data.table(stream.table)
    cols = _Frame(table)
    codes = table["client_id"].cat.codes.to_numpy()
    ev = pd.DataFrame({"client_id": codes, "t": stream.time(cols)})
    for name, fn in stream.values.items():
        ev[name] = np.nan_to_num(np.asarray(fn(cols), dtype=np.float64), nan=0.0)
    for name, fn in stream.filters.items():
        ev[f"where:{name}"] = np.asarray(fn(cols), dtype=bool)
    if stream_name == "event":
        ev["event_type"] = table["event_type"].astype("str").to_numpy()
    return ev[ev["t"] != NAT]


def _mask(ev: pd.DataFrame, where: str | None) -> pd.Series:
    if where is None:
        return pd.Series(True, index=ev.index)
    if where.startswith("type:"):
        return ev["event_type"] == where.removeprefix("type:")
    return ev[f"where:{where}"]


class Baseline:
    """Features for the clients of one as_of date, computed with pandas groupby."""

    def __init__(self, data: CRMData, clients: pd.Index, as_of: pd.Timestamp) -> None:
        self.data = data
        self.clients = clients  # positions in data.clients: tables are grouped by those codes
        self.as_of = int(as_of.timestamp())
        self._events: dict[str, pd.DataFrame] = {}

    def events(self, name: str) -> pd.DataFrame:
        if name not in self._events:
            self._events[name] = _events(self.data, name)
        return self._events[name]

    def evaluate(self, f: Formula) -> pd.Series:
        if isinstance(f, Agg):
            return self.agg(f)
        if isinstance(f, Diff):
            return self.evaluate(f.a) - self.evaluate(f.b)
        if isinstance(f, Ratio):
            b = self.evaluate(f.b)
            return self.evaluate(f.a) / b.where(b != 0)
        if isinstance(f, MeanAge):
            n = self.evaluate(f.count)
            return (n * (self.as_of // DAY) - self.evaluate(f.day_sum)) / n.where(n > 0)
        assert isinstance(f, Custom)
        return self.custom(f.name)

    def agg(self, a: Agg) -> pd.Series:
        ev = self.events(a.stream)
        end = self.as_of - a.offset * DAY
        start = -(2**62) if a.window is None else end - a.window * DAY
        sel = ev[(ev["t"] >= start) & (ev["t"] < end) & _mask(ev, a.where)]
        g = sel.groupby("client_id")
        if a.how == "count":
            return g.size().reindex(self.clients, fill_value=0).astype(float)
        if a.how == "sum":
            return g[a.value].sum().reindex(self.clients, fill_value=0.0)
        if a.how == "days_since":
            return (self.as_of - g["t"].max().reindex(self.clients)) / DAY
        if a.how == "days_since_first":
            return (self.as_of - g["t"].min().reindex(self.clients)) / DAY
        last = sel.sort_values("t", kind="stable").groupby("client_id")[a.value].last()
        return last.reindex(self.clients).astype(float)

    def custom(self, name: str) -> pd.Series:
        if name in ("days_to_contract_end", "rolling_contracts", "service_lines"):
            return self._contracts()[name]
        if name in ("price_change_365d", "scope_change_365d"):
            return self._value_moves()[name]
        return self._client_attributes()[name]

    def _value_moves(self) -> pd.DataFrame:
        """Monthly value by (client, service line) a year ago and now: price and scope changes."""
        c = self.data.contracts
        as_of = pd.Timestamp(self.as_of, unit="s", tz="UTC")
        then_at = as_of - pd.Timedelta(days=365)
        ended = c["end_date"].where(
            c["cancelled_at"].isna() | (c["end_date"] < c["cancelled_at"]), c["cancelled_at"]
        )
        now = (c["start_date"] < as_of) & (ended.isna() | (ended >= as_of))
        then = (c["start_date"] < then_at) & (ended.isna() | (ended >= then_at))
        key = [c["client_id"].cat.codes, c["service_line"].cat.codes]
        value = c["monthly_value"].fillna(0.0)
        v_now = value[now].groupby([k[now] for k in key]).sum()
        v_then = value[then].groupby([k[then] for k in key]).sum()
        both = v_now.index.intersection(v_then.index)
        before = v_then[both].groupby(level=0).sum().reindex(self.clients)
        after = v_now[both].groupby(level=0).sum().reindex(self.clients)
        added = v_now[v_now.index.difference(v_then.index)].groupby(level=0).sum()
        dropped = v_then[v_then.index.difference(v_now.index)].groupby(level=0).sum()
        return pd.DataFrame(
            {
                "price_change_365d": ((after - before) / before).where(before > 0),
                "scope_change_365d": added.reindex(self.clients, fill_value=0.0)
                - dropped.reindex(self.clients, fill_value=0.0),
            }
        )

    def _contracts(self) -> pd.DataFrame:
        c = self.data.contracts
        as_of = pd.Timestamp(self.as_of, unit="s", tz="UTC")
        ended = c["end_date"].where(
            c["cancelled_at"].isna() | (c["end_date"] < c["cancelled_at"]), c["cancelled_at"]
        )
        live = c[(c["start_date"] < as_of) & (ended.isna() | (ended >= as_of))]
        live = live.assign(
            client_id=live["client_id"].cat.codes,
            days=(live["end_date"] - as_of).dt.total_seconds() / DAY,
            rolling=live["end_date"].isna(),
            line=live["service_line"].cat.codes,
        )
        g = live.groupby("client_id")
        return pd.DataFrame(
            {
                "days_to_contract_end": g["days"].min().reindex(self.clients),
                "rolling_contracts": g["rolling"]
                .sum()
                .reindex(self.clients, fill_value=0)
                .astype(float),
                "service_lines": g["line"]
                .nunique()
                .reindex(self.clients, fill_value=0)
                .astype(float),
            }
        )

    def _client_attributes(self) -> pd.DataFrame:
        cl = self.data.clients.iloc[self.clients]
        as_of = pd.Timestamp(self.as_of, unit="s", tz="UTC")
        since = cl["client_since"].where(cl["client_since"] < as_of)
        manager = cl["account_manager"].fillna("").str.strip().str.len() > 0
        return pd.DataFrame(
            {
                "client_age_days": (as_of - since).dt.total_seconds() / DAY,
                "has_account_manager": manager.astype(float),
                "segment": cl["segment"].astype(object),
                "industry": cl["industry"].astype(object),
                "region": cl["region"].astype(object),
            }
        )


def baseline_features(
    data: CRMData, snapshots: pd.DataFrame, feature_set: FeatureSet | None = None
) -> pd.DataFrame:
    """The same features as ``churnguard.features.engine.compute_features``, one as_of at a time."""
    fs = feature_set or feature_set_for(data)
    parts = []
    for as_of, group in snapshots.groupby("as_of", sort=False):
        ids = pd.Index(data.clients["client_id"]).get_indexer(group["client_id"].astype("str"))
        b = Baseline(data, pd.Index(ids), pd.Timestamp(as_of))
        cols = {f.name: b.evaluate(f.formula).to_numpy() for f in fs.features}
        parts.append(
            pd.DataFrame(
                {
                    "client_id": group["client_id"].astype("str").to_numpy(),
                    "as_of": group["as_of"].to_numpy(),
                    **cols,
                },
                index=group.index,
            )
        )
    return pd.concat(parts).loc[snapshots.index]
