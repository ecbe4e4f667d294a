"""Test data and set-ups shared by several test modules.

Small random CRM data sets (every table, with ties, gaps and empty values), API bodies built
from them, settings of a churnguard home of its own, and score stores on both backends.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from churnguard.config import Settings
from churnguard.domain.contract import CHANNELS, DIRECTIONS, PRIORITIES, CRMData, from_frames
from churnguard.domain.mapping import Mapping
from churnguard.domain.rawtable import RawTable, map_table
from churnguard.modeling.model import ChurnModel
from churnguard.store.scores import ScoreRecord, ScoreStore

START = pd.Timestamp("2022-01-01", tz="UTC")


def _times(rng: np.random.Generator, n: int, days: int, empty: float = 0.0) -> pd.Series:
    """Random UTC timestamps over `days` days, half of them at midnight (to make ties)."""
    seconds = rng.integers(0, days * 86_400, n)
    seconds = np.where(rng.random(n) < 0.5, seconds // 86_400 * 86_400, seconds)
    t = pd.Series(START + pd.to_timedelta(seconds, unit="s")).dt.as_unit("s")
    return t.mask(rng.random(n) < empty)


def _after(rng: np.random.Generator, t: pd.Series, max_days: int, empty: float) -> pd.Series:
    later = t + pd.to_timedelta(rng.integers(0, max_days * 86_400, len(t)), unit="s")
    return later.mask(rng.random(len(t)) < empty)


def _choice(rng: np.random.Generator, values: tuple[str, ...], n: int) -> pd.Categorical:
    return pd.Categorical(rng.choice(values, n), categories=values)


def _feedback(rng: np.random.Generator, owners: np.ndarray, at: pd.Series) -> pd.DataFrame:
    """Survey responses with scores in each survey's range (NPS 0-10, CSAT 1-5)."""
    survey = _choice(rng, ("nps", "csat"), len(at))
    nps = np.asarray(survey == "nps")
    score = np.where(nps, rng.integers(0, 11, len(at)), rng.integers(1, 6, len(at)))
    return pd.DataFrame(
        {"client_id": owners, "submitted_at": at, "survey": survey, "score": score.astype(float)}
    )


def random_crm(n_clients: int = 40, seed: int = 0, days: int = 900, rows: int = 30) -> CRMData:
    """A random, contract-conforming data set; `rows` is the mean rows per client per table."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:04d}" for i in range(n_clients)])

    def owners(n: int) -> np.ndarray:
        return rng.choice(ids, n)

    n = n_clients * rows
    clients = pd.DataFrame(
        {
            "client_id": pd.Series(ids, dtype="str"),
            "account_manager": pd.Series(rng.choice(["Ann", "Bo", ""], n_clients), dtype="str"),
            "segment": pd.Categorical(rng.choice(["smb", "mid", "ent"], n_clients)),
            "client_since": _times(rng, n_clients, days, empty=0.2),
        }
    )
    k = n_clients * 3
    start = _times(rng, k, days)
    contracts = pd.DataFrame(
        {
            "contract_id": pd.Series([f"K{i}" for i in range(k)], dtype="str"),
            "client_id": owners(k),
            "service_line": pd.Categorical(rng.choice(["it", "audit", "staff"], k)),
            "start_date": start,
            "end_date": _after(rng, start, 500, empty=0.3),
            "monthly_value": rng.integers(0, 5000, k) + rng.integers(0, 100, k) / 100,
            "auto_renew": rng.random(k) < 0.4,
            "cancelled_at": _after(rng, start, 400, empty=0.7),
        }
    )
    issued = _times(rng, n, days)
    disputed = _after(rng, issued, 60, empty=0.8)
    invoices = pd.DataFrame(
        {
            "invoice_id": pd.Series([f"I{i}" for i in range(n)], dtype="str"),
            "client_id": owners(n),
            "issued_at": issued,
            "due_at": issued + pd.Timedelta(days=30),
            "amount": rng.integers(0, 10_000, n) + rng.integers(0, 100, n) / 100,
            "paid_at": _after(rng, issued, 70, empty=0.2),
            "disputed_at": disputed,
            "dispute_resolved_at": _after(rng, disputed, 90, empty=0.4).where(disputed.notna()),
        }
    )
    opened = _times(rng, n, days)
    return from_frames(
        {
            "clients": clients,
            "contracts": contracts,
            "interactions": pd.DataFrame(
                {
                    "client_id": owners(n),
                    "occurred_at": _times(rng, n, days),
                    "channel": _choice(rng, CHANNELS, n),
                    "direction": _choice(rng, DIRECTIONS, n),
                }
            ),
            "feedback": _feedback(rng, owners(n), _times(rng, n, days)),
            "invoices": invoices,
            "tickets": pd.DataFrame(
                {
                    "ticket_id": pd.Series([f"T{i}" for i in range(n)], dtype="str"),
                    "client_id": owners(n),
                    "opened_at": opened,
                    "resolved_at": _after(rng, opened, 40, empty=0.3),
                    "priority": _choice(rng, PRIORITIES, n),
                }
            ),
            "events": pd.DataFrame(
                {
                    "client_id": owners(n),
                    "occurred_at": _times(rng, n, days),
                    "event_type": pd.Categorical(rng.choice(["billable hours", "login"], n)),
                    "value": pd.Series(rng.random(n) * 10).mask(rng.random(n) < 0.2),
                }
            ),
        }
    )


# ---------------------------------------------------------------- raw tables, as data.py reads them

CLIENTS = "client_id,name\nC1,Acme\nC2,Beta\n"
CONTRACTS = (
    "contract_id,client_id,start_date,monthly_value\nK1,C1,2024-01-01,100\nK2,C2,2024-02-01,50\n"
)


def csv_table(name: str, text: str, mapping: Mapping | None = None) -> RawTable:
    """A RawTable as data.py builds it from a CSV file: strings, rows named by file line."""
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return map_table(name, f"{name}.csv", frame, np.arange(2, len(frame) + 2), mapping)


def tables(**texts: str | None) -> dict[str, RawTable]:
    """Valid clients and contracts, plus or instead of the given tables (None drops one)."""
    texts = {"clients": CLIENTS, "contracts": CONTRACTS, **texts}
    return {name: csv_table(name, text) for name, text in texts.items() if text is not None}


def as_of_dates(n: int = 4, days: int = 900) -> list[pd.Timestamp]:
    """Evenly spread as_of dates inside the random data's time span (midnights, to hit ties)."""
    return [START + pd.Timedelta(days=int(d)) for d in np.linspace(60, days - 30, n)]


# ---------------------------------------------------------------- shared by several test modules

PARAMS: dict[str, dict[str, Any]] = {"lightgbm": {"num_leaves": 4}, "logistic": {"C": 0.1}}
ModelFactory = Callable[[str, dict[str, Any]], ChurnModel]


def _json_value(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def records_body(data: CRMData, client_id: str) -> dict[str, Any]:
    """One client's rows as the JSON body a CRM would send."""
    one = data.for_clients([client_id])
    body: dict[str, Any] = {"client_id": client_id}
    for name, df in one.tables().items():
        rows = [
            {k: _json_value(v) for k, v in row.items() if k != "client_id"}
            for row in df.astype(object).to_dict("records")
        ]
        rows = [{k: v for k, v in r.items() if v is not None} for r in rows]
        if name == "clients":
            body["client"] = rows[0]
        else:
            body[name] = rows
    return body


def settings_for(home: Path) -> Settings:
    """Settings of a churnguard home of its own (MLflow store, score store, models folder)."""
    return Settings(
        home=home,
        models_dir=home / "models",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
    )


POSTGRES_ENV = "CHURNGUARD_TEST_POSTGRES_URL"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
]


@contextlib.contextmanager
def open_store(backend: str, tmp_path: Path) -> Iterator[ScoreStore]:
    """A store with a fresh, empty schema: a SQLite file, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        with ScoreStore(f"sqlite:///{tmp_path / 'db' / 'scores.db'}").create() as store:
            yield store
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/postgres.sh starts a server, prints one)")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        with ScoreStore(scoped.render_as_string(hide_password=False)).create() as store:
            yield store
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class TcpRelay:
    """A TCP relay to a database on a port of its own, cut and restored at will: an outage (and
    its end) without stopping the server. Before ``start``, connections to ``port`` are refused."""

    def __init__(self, url: str) -> None:
        real = sa.make_url(url)
        self.target = (real.host or "127.0.0.1", real.port or 5432)
        with socket.create_server(("127.0.0.1", 0)) as probe:
            self.port: int = probe.getsockname()[1]
        self.url = real.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        """Close the listener and every relayed connection."""
        with self._lock:
            for s in [self._server, *self._open]:
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self._open.clear()
            self._server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def client_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """One row per client, Telco-like: churn depends on contract, tenure, support and billing."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    monthly = rng.uniform(20, 110, n).round(2)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.5, 0.3, 0.2])
    paperless = rng.choice(["Yes", "No"], n)
    support = rng.choice([True, False], n)
    logit = (
        -0.5
        + 1.8 * (contract == "Month-to-month")
        - 0.05 * tenure
        + 0.01 * monthly
        + 0.6 * (paperless == "Yes")
        - 0.8 * support
    )
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    total = (tenure * monthly).round(2).astype(str)
    total[:7] = " "  # new clients not billed yet, as in Telco's TotalCharges
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "tenure": tenure,
            "monthly": monthly,
            "total": total,
            "contract": contract,
            "paperless": paperless,
            "support": support,
            "country": "NL",
            "email": [f"client{i}@example.com" for i in range(n)],
            "churn": np.where(churned, "Yes", "No"),
        }
    )


def score_record(
    client_id: str, when: datetime, p: float, manager: str | None = "Ana", **fields: Any
) -> ScoreRecord:
    """A stored score with a band from its probability (0.1, 0.3) and plausible other values."""
    return ScoreRecord(
        client_id=client_id,
        as_of=when,
        model_version="1",
        probability=p,
        band="high" if p >= 0.3 else "medium" if p >= 0.1 else "low",
        revenue_at_risk=p * 12_000,
        monthly_value=1000.0,
        feature_digest="0" * 64,
        change={"direction": "new"},
        account_manager=manager,
        **fields,
    )


def stored_rows(store: ScoreStore, name: str, leave_out: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """A store table's rows without the ``leave_out`` columns, ordered by its first two columns."""
    table = sa.Table(name, sa.MetaData(), autoload_with=store.engine)
    kept = [c for c in table.columns if c.name not in leave_out]
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(*kept).order_by(*kept[:2])).all()
    return [tuple(row) for row in rows]
