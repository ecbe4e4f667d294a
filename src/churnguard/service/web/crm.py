"""The CRM data behind the dashboard: loaded lazily, kept in memory, reloaded when it changes.

Pages read a client's contracts, renewal date and recent history (interactions, feedback,
invoices and disputes, tickets) from here. The data comes from ``settings.crm_source`` through
``data.load_crm``; a folder is reloaded when one of its files changes, a database every few
minutes. Without data (no folder, data that breaks the contract) the pages still work and say why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnguard.domain.churn import contract_stops
from churnguard.domain.contract import CRMData

logger = logging.getLogger(__name__)

_DB_RELOAD_SECONDS = 300.0  # a database source is read again after this long


@dataclass(frozen=True)
class TimelineItem:
    """Something that happened with a client, for the client page's timeline."""

    when: datetime
    kind: str  # interaction, feedback, invoice, dispute, ticket, contract
    text: str
    tone: str = "neutral"  # good, bad or neutral
    upcoming: bool = False  # after the timeline's date (a contract's end), known in advance


@dataclass(frozen=True)
class ContractRow:
    contract_id: str
    service_line: str
    start: date
    end: date | None
    monthly_value: float
    auto_renew: bool
    cancelled: date | None
    state: str = "rolling"  # as of a date: "ended", "cancelled", "ends" (later) or "rolling"
    stop: date | None = None  # when it stops: the earlier of its end and its cancellation


class CRMView:
    """Loaded CRM data with each table's rows found by client in one search."""

    def __init__(self, data: CRMData, loaded_at: datetime) -> None:
        self.data = data
        self.loaded_at = loaded_at
        self._codes = pd.Index(data.clients["client_id"].astype(str))
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        self._memo: dict[object, Any] = {}
        managers = data.clients["account_manager"].dropna().astype(str).str.strip()
        self.managers = sorted({m for m in managers if m})

    def rows(self, table: str, client_id: str) -> pd.DataFrame:
        """A table's rows of one client (empty for a client not in the data)."""
        frame = self.data.table(table)
        code = self._codes.get_indexer(pd.Index([client_id]))[0]
        if code < 0:
            return frame.iloc[:0]
        if table == "clients":
            return frame.iloc[[code]]
        order, bounds = self._index(table)
        return frame.iloc[order[bounds[code] : bounds[code + 1]]]

    def codes(self, client_ids: list[str]) -> np.ndarray:
        """Each client's position in the clients table (-1 for a client not in the data)."""
        if not client_ids:
            return np.zeros(0, dtype=np.intp)
        return self._codes.get_indexer(pd.Index(client_ids, dtype="str"))

    def contract_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Every contract's start and ``contract_stops`` (NaT: rolling) as UTC datetime64[us]."""

        def times() -> tuple[np.ndarray, np.ndarray]:
            contracts = self.data.contracts
            start = contracts["start_date"].to_numpy("datetime64[us]")
            stop = contract_stops(contracts).to_numpy("datetime64[us]")
            return start, stop

        found: tuple[np.ndarray, np.ndarray] = self.memo("contract_times", times)
        return found

    def memo(self, key: object, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per loaded data (figures derived from the whole data)."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]

    def _index(self, table: str) -> tuple[np.ndarray, np.ndarray]:
        """Row positions sorted by client, and where each client's rows start in them."""
        with self._lock:
            if table not in self._rows:
                codes = self.data.table(table)["client_id"].cat.codes.to_numpy()
                order = np.argsort(codes, kind="stable")
                bounds = np.searchsorted(codes[order], np.arange(len(self._codes) + 1))
                self._rows[table] = (order, bounds)
            return self._rows[table]


@dataclass
class CRMCache:
    """The CRM data of a source, loaded on first use and reloaded when the source changes."""

    source: str | Path
    mapping: Path | None = None
    load: Callable[..., Any] | None = None  # data.load_crm; injectable for tests
    _view: CRMView | None = None
    _problem: str | None = "the CRM data has not been loaded yet"
    _signature: object = field(default_factory=object)  # matches no real signature
    _checked: float = field(default=-1e18)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> tuple[CRMView | None, str | None]:
        """(the data, None), or (None, why there is none)."""
        with self._lock:
            signature = self._current_signature()
            if signature != self._signature:
                self._reload(signature)
            return self._view, self._problem

    def _current_signature(self) -> object:
        """What identifies the source's content: its files' names, sizes and times."""
        if "://" in str(self.source):
            now = time.monotonic()
            if now - self._checked >= _DB_RELOAD_SECONDS:
                self._checked = now
            return self._checked
        folder = Path(self.source)
        try:
            files = sorted(p for p in folder.iterdir() if p.is_file())
            return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        except OSError:
            return None

    def _reload(self, signature: object) -> None:
        from churnguard.domain.data import load_crm  # pandas-heavy reading: only when needed

        started = time.perf_counter()
        try:
            data, _ = (self.load or load_crm)(self.source, self.mapping)
        except Exception as exc:  # any failure leaves the pages working without CRM data
            self._view, self._problem = None, _first_line(exc)
            logger.warning("dashboard: no CRM data from %s: %s", self.source, self._problem)
        else:
            self._view, self._problem = CRMView(data, datetime.now(UTC)), None
            logger.info("dashboard: CRM data loaded in %.1f s", time.perf_counter() - started)
        self._signature = signature


# ---------------------------------------------------------------------------------- renewals


def renewal_dates(view: CRMView, as_of: dict[str, datetime]) -> dict[str, date | None]:
    """Each client's renewal date: the first end of a contract in force at its ``as_of``.

    A client whose contracts in force are all rolling maps to None; a client with no contract
    in force (or not in the data) is left out. One set of array operations for all the clients.
    """
    ids = list(as_of)
    codes = view.codes(ids)
    order, bounds = view._index("contracts")
    lo, hi = bounds[codes[codes >= 0]], bounds[codes[codes >= 0] + 1]
    clients = np.flatnonzero(codes >= 0)[hi > lo]  # the clients with contracts, in ``ids``
    counts = (hi - lo)[hi > lo]
    if not len(counts):
        return {}
    rows = order[_ranges(lo, hi)]  # their contracts, one client after the other
    first = np.cumsum(counts) - counts  # where each client's contracts start in ``rows``
    start, stop = (times[rows] for times in view.contract_times())
    t = pd.to_datetime([as_of[i] for i in ids], utc=True).as_unit("us").tz_localize(None)
    when = np.repeat(t.to_numpy()[clients], counts)
    rolling = np.isnat(stop)
    in_force = (start <= when) & (rolling | (stop > when))
    never = np.iinfo(np.int64).max
    covered = np.logical_or.reduceat(in_force, first)
    soonest = np.minimum.reduceat(np.where(in_force & ~rolling, stop.view(np.int64), never), first)
    return {
        ids[i]: None if end == never else _us_date(end)
        for i, end in zip(clients[covered], soonest[covered], strict=True)
    }


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The positions lo[0]..hi[0]-1, then lo[1]..hi[1]-1, ... in one array."""
    counts = hi - lo
    before = np.cumsum(counts) - counts  # positions taken by the earlier ranges
    return np.repeat(lo - before, counts) + np.arange(counts.sum())


def _us_date(us: int) -> date:
    """The UTC day of a time in microseconds since the epoch."""
    day: date = np.datetime64(int(us), "us").astype("datetime64[D]").item()
    return day


def client_contracts(view: CRMView, client_id: str, as_of: datetime) -> list[ContractRow]:
    """A client's contracts, newest first, each with its state as of ``as_of``."""
    frame = view.rows("contracts", client_id).sort_values("start_date", ascending=False)
    frame = frame.assign(stop=contract_stops(frame))
    rows = []
    for r in _records(frame):
        state, stop = _contract_state(r, pd.Timestamp(as_of))
        rows.append(
            ContractRow(
                contract_id=str(r.contract_id),
                service_line=_text(r.service_line) or "-",
                start=r.start_date.date(),
                end=_day(r.end_date),
                monthly_value=float(r.monthly_value),
                auto_renew=bool(r.auto_renew),
                cancelled=_day(r.cancelled_at),
                state=state,
                stop=None if stop is None else stop.date(),
            )
        )
    return rows


def _contract_state(r: Any, as_of: pd.Timestamp) -> tuple[str, pd.Timestamp | None]:
    """("ended" | "cancelled" | "ends" | "rolling", when it stops) as of ``as_of``.

    ``r.stop`` is its ``contract_stops``; a stop before its end date is a cancellation.
    """
    if pd.isna(r.stop):
        return "rolling", None
    stop: pd.Timestamp = r.stop
    cancelled = pd.isna(r.end_date) or stop < r.end_date
    if stop > as_of:
        return "ends", stop
    return ("cancelled" if cancelled else "ended"), stop


def client_attributes(view: CRMView, client_id: str, names: tuple[str, ...]) -> dict[str, str]:
    """The named columns of a client's row that are filled in (segment, industry, region)."""
    frame = view.rows("clients", client_id)
    if frame.empty:
        return {}
    row = frame.iloc[0]
    found = {n: _text(row[n]) for n in names if n in frame.columns}
    return {n: v for n, v in found.items() if v}


# ---------------------------------------------------------------------------------- timeline


def client_timeline(
    view: CRMView, client_id: str, until: datetime, limit: int = 40
) -> list[TimelineItem]:
    """A client's most recent events up to ``until``, newest first, as known then; contracts
    in force then that end later show first, as upcoming ends."""
    items = [
        *_interactions(view.rows("interactions", client_id)),
        *_feedback(view.rows("feedback", client_id)),
        *_invoices(view.rows("invoices", client_id), until),
        *_tickets(view.rows("tickets", client_id), until),
        *_contract_events(view.rows("contracts", client_id), until),
    ]
    recent = [i for i in items if i.when <= until or i.upcoming]
    recent.sort(key=lambda i: i.when, reverse=True)
    return recent[:limit]


def _interactions(frame: pd.DataFrame) -> list[TimelineItem]:
    return [
        TimelineItem(
            r.occurred_at.to_pydatetime(),
            "interaction",
            " ".join(
                w for w in (_text(r.direction), _text(r.channel) or "contact") if w
            ).capitalize(),
        )
        for r in _records(frame)
    ]


def _feedback(frame: pd.DataFrame) -> list[TimelineItem]:
    items = []
    for r in _records(frame):
        survey = _text(r.survey) or "survey"
        low, high = (6, 9) if survey == "nps" else (2, 4)
        tone = "bad" if r.score <= low else "good" if r.score >= high else "neutral"
        comment = _text(r.comment)
        text = f"{survey.upper()} score {r.score:g}" + (f": “{comment}”" if comment else "")
        items.append(TimelineItem(r.submitted_at.to_pydatetime(), "feedback", text, tone))
    return items


def _invoices(frame: pd.DataFrame, until: datetime) -> list[TimelineItem]:
    items = []
    now = pd.Timestamp(until)
    for r in _records(frame):
        paid = r.paid_at if pd.notna(r.paid_at) and r.paid_at <= now else None
        status = (
            f"paid {r.paid_at:%d %b %Y}"
            if paid is not None
            else f"overdue since {r.due_at:%d %b %Y}"
            if r.due_at < now
            else f"due {r.due_at:%d %b %Y}"
        )
        tone = "bad" if paid is None and r.due_at < now else "neutral"
        text = f"Invoice {r.invoice_id}: {r.amount:,.2f}, {status}"
        items.append(TimelineItem(r.issued_at.to_pydatetime(), "invoice", text, tone))
        if pd.notna(r.disputed_at):
            reason = _text(r.dispute_reason)
            text = f"Invoice {r.invoice_id} disputed" + (f": {reason}" if reason else "")
            items.append(TimelineItem(r.disputed_at.to_pydatetime(), "dispute", text, "bad"))
        if pd.notna(r.dispute_resolved_at):
            text = f"Dispute on invoice {r.invoice_id} resolved"
            items.append(
                TimelineItem(r.dispute_resolved_at.to_pydatetime(), "dispute", text, "good")
            )
    return items


def _tickets(frame: pd.DataFrame, until: datetime) -> list[TimelineItem]:
    items = []
    now = pd.Timestamp(until)
    for r in _records(frame):
        about = ", ".join(w for w in (_text(r.priority), _text(r.category)) if w)
        resolved = pd.notna(r.resolved_at) and r.resolved_at <= now
        days = (r.resolved_at - r.opened_at).days if resolved else 0
        state = f"resolved in {days} day{'' if days == 1 else 's'}" if resolved else "still open"
        text = f"Ticket {r.ticket_id}" + (f" ({about})" if about else "") + f": {state}"
        urgent = _text(r.priority) in ("high", "urgent")
        tone = "bad" if urgent and not resolved else "neutral"
        items.append(TimelineItem(r.opened_at.to_pydatetime(), "ticket", text, tone))
    return items


def _contract_events(frame: pd.DataFrame, until: datetime) -> list[TimelineItem]:
    items = []
    for r in _records(frame.assign(stop=contract_stops(frame))):
        line = _text(r.service_line) or "service"
        start = r.start_date.to_pydatetime()
        text = f"Contract {r.contract_id} started: {line}, {r.monthly_value:,.0f} a month"
        items.append(TimelineItem(start, "contract", text, "good"))
        state, stop = _contract_state(r, pd.Timestamp(until))
        if stop is None or (state == "ends" and start > until):  # not in force at ``until``
            continue
        when = stop.to_pydatetime()
        if state == "ends":
            text = f"Contract {r.contract_id} ({line}) ends on {when:%d %b %Y}"
            items.append(TimelineItem(when, "contract", text, upcoming=True))
        else:
            tone = "bad" if state == "cancelled" else "neutral"
            text = f"Contract {r.contract_id} ({line}) {state}"
            items.append(TimelineItem(when, "contract", text, tone))
    return items


def _records(frame: pd.DataFrame) -> Iterator[Any]:
    """A frame's rows as named tuples (typed loosely: their fields are the contract's)."""
    return frame.itertuples(index=False)


def _text(value: object) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[call-overload]
        return None
    text = str(value).strip()
    return text or None


def _day(value: object) -> date | None:
    return None if pd.isna(value) else pd.Timestamp(value).date()  # type: ignore[call-overload, arg-type]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
