"""Scores with their history and an audit record per write; the aggregates the dashboard shows.

Timestamps go in and come out as UTC-aware datetimes. Results are plain dataclasses: the service
wraps them in its own schemas. One type per direction: ``ScoreRecord`` is written, ``Score`` is
read back; ``ScoreSummary`` is the part of a ``Score`` that "what changed" compares with, read on
its own for a whole batch (decoding every client's drivers and actions costs 4-5 times as much).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from churnguard.store.actions import ActionLog
from churnguard.store.bulk import BulkWriter, check_source, write_time
from churnguard.store.columns import feature_digest as feature_digest  # its home before
from churnguard.store.database import load_rows, to_json
from churnguard.store.schema import (
    SCORE_KEY,
    Source,
    audit,
    aware_utc,
    current,
    incoming,
    scores,
)

ORDERS = ("revenue_at_risk", "probability", "monthly_value", "client_id")
GROUPINGS = ("account_manager", "segment", "band", "model_version")  # for revenue_at_risk_by
MAX_PAGE = 1000
MAX_OFFSET = 2**53  # an offset past any real table; beyond it databases overflow their integers

_utc_cached = functools.lru_cache(maxsize=256)(aware_utc)  # a batch shares a handful of as_of
_KEY_NAMES = list(SCORE_KEY)
_SCORE_COLUMNS = [c.name for c in scores.columns if c.name != "id"]
_DIRECT_ROWS = 100  # API scores written without the scratch table at most (``_upsert``)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRecord:
    """One score to write; ``(client_id, as_of, model_version)`` identifies it.

    ``drivers`` are ``{feature, value, contribution, reason}`` dicts, ``actions``
    ``{action, reason, feature}`` dicts, ``change`` what ``describe_change`` returns, and
    ``feature_digest`` the ``feature_digest()`` of the features the model saw (kept in the audit).
    """

    client_id: str
    as_of: datetime
    model_version: str
    probability: float
    band: str
    revenue_at_risk: float
    monthly_value: float
    feature_digest: str
    change: dict[str, Any]
    account_manager: str | None = None
    segment: str | None = None
    client_name: str | None = None
    drivers: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    curve: dict[str, Any] | None = None  # {horizons: [{days, probability}], renewal: {...}}


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreSummary:
    """The part of a stored score that "what changed" compares with."""

    client_id: str
    as_of: datetime
    model_version: str
    probability: float
    band: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Score(ScoreSummary):
    """A stored score, as read back."""

    id: int
    revenue_at_risk: float
    monthly_value: float
    account_manager: str | None
    segment: str | None
    client_name: str | None
    drivers: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    change: dict[str, Any]
    created_at: datetime
    source: str  # "batch": from the CRM data; "api": an answer to a score request
    curve: dict[str, Any] | None = None  # horizons and renewal; None for older scores


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One write of a score: which model, on which features, when, from where."""

    id: int
    client_id: str
    as_of: datetime
    model_version: str
    feature_digest: str
    source: str
    scored_at: datetime


def describe_change(
    previous: ScoreSummary | None, probability: float, tolerance: float = 0.05
) -> dict[str, Any]:
    """What changed since ``previous``: "new", or "rising"/"falling"/"steady" with the delta.

    A move smaller than ``tolerance`` (in probability) is "steady".
    """
    if previous is None:
        return {"direction": "new"}
    delta = probability - previous.probability
    direction = "steady" if abs(delta) < tolerance else "rising" if delta > 0 else "falling"
    return {
        "direction": direction,
        "delta": round(delta, 6),
        "previous_probability": previous.probability,
        "previous_band": previous.band,
        "previous_as_of": previous.as_of.isoformat(),
    }


def change_texts(
    previous: Sequence[ScoreSummary | None], probability: Sequence[float], tolerance: float = 0.05
) -> list[str]:
    """``to_json(describe_change(before, p, tolerance))`` of each pair, the same text, written
    without a dict per score (a batch's "what changed"; bands and as_of encoded once each)."""
    new = to_json(describe_change(None, 0.0))
    encoded: dict[str, str] = {}  # each band's JSON
    last: tuple[object, str] = (None, "")  # the last as_of and its JSON
    out = []
    for before, q in zip(previous, probability, strict=True):
        if before is None:
            out.append(new)
            continue
        p = before.probability
        delta = q - p
        if type(p) is not float or type(q) is not float or not math.isfinite(delta):
            out.append(to_json(describe_change(before, q, tolerance)))  # the rare case
            continue
        direction = "steady" if abs(delta) < tolerance else "rising" if delta > 0 else "falling"
        band = encoded.get(before.band) or encoded.setdefault(before.band, to_json(before.band))
        if before.as_of is not last[0]:  # a batch's summaries share a few as_of objects
            last = (before.as_of, to_json(before.as_of.isoformat()))
        when = last[1]
        out.append(
            f'{{"direction":"{direction}","delta":{round(delta, 6)!r},'
            f'"previous_probability":{p!r},"previous_band":{band},"previous_as_of":{when}}}'
        )
    return out


class ScoreStore(ActionLog, BulkWriter):
    """Scores, audit records and logged actions (``ActionLog``) in the store's database."""

    # --- writing scores --------------------------------------------------------------------------

    def save_scores(self, records: Iterable[ScoreRecord], source: Source = "batch") -> int:
        """Write scores and their audit records in one transaction; returns the rows written.

        A score whose ``(client_id, as_of, model_version)`` is already stored from the same
        ``source`` takes the new values (within ``records`` the last one wins); the other
        source's score stays as it is. Only batch scores (from the CRM data) become a client's
        current score, the one listings and the dashboard show: scores from the API are kept in
        the client's history and audit trail and never change its book, name or segment. If any
        record fails, nothing is written.
        """
        check_source(source)
        rows = _incoming_rows(records, write_time(), source)
        if rows and source == "api" and len(rows) <= _DIRECT_ROWS:
            self._upsert(rows)
        elif rows:
            self._merge(lambda conn: load_rows(conn, incoming, rows), source)
        return len(rows)

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        """A few API scores straight into ``scores`` and the audit, without the scratch table
        (making and dropping it costs more than a few rows); what ``_merge`` does for them."""
        audit_rows = [
            {**{n: r[n] for n in _KEY_NAMES}, "feature_digest": r["feature_digest"],
             "scored_at": r["created_at"]}
            for r in rows
        ]  # fmt: skip
        with self.driver() as dbapi:  # one transaction, statements prepared once
            self.prepared(self._upsert_scores, _SCORE_COLUMNS).run_many(dbapi, rows)
            self.prepared(_AUDIT_INSERT, _AUDIT_COLUMNS).run_many(dbapi, audit_rows)
            dbapi.commit()

    @functools.cached_property
    def _upsert_scores(self) -> sa.Insert:
        """Insert scores; a stored score with the same key (source included) takes the values."""
        stmt = self._insert(scores)
        return stmt.on_conflict_do_update(
            index_elements=_KEY_NAMES,
            set_={n: stmt.excluded[n] for n in _SCORE_COLUMNS if n not in _KEY_NAMES},
        )

    # --- reading scores --------------------------------------------------------------------------

    def latest_scores(
        self,
        manager: str | None = None,
        band: str | None = None,
        search: str | None = None,
        order_by: str = "revenue_at_risk",
        limit: int = 50,
        offset: int = 0,
        ascending: bool | None = None,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> tuple[list[Score], int]:
        """Each client's latest score, filtered, ordered and paged; returns (page, total matches).

        The latest score is the one with the newest ``as_of``; among model versions that scored
        the same ``as_of``, the one written last. Filters apply to that score, so a client who
        moved to another account manager shows only in the new manager's book. ``search`` matches
        part of the client id or name, ignoring case; ``manager=""`` selects the unassigned
        clients. Numbers sort high to low, ids A to Z, unless ``ascending`` says otherwise.
        ``where`` adds conditions on ``scores`` (``store.attention``'s, say).
        """
        if order_by not in ORDERS:
            raise ValueError(f"order_by must be one of {', '.join(ORDERS)}, not {order_by!r}")
        if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
            raise ValueError(f"need 1 <= limit <= {MAX_PAGE} and 0 <= offset <= {MAX_OFFSET}")
        matches = _current_scores().where(*_filters(manager, band, search), *where)
        column = scores.c[order_by]
        if ascending is None:
            ascending = order_by == "client_id"
        order = column.asc() if ascending else column.desc()
        page = matches.order_by(order, scores.c.client_id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(matches.subquery())
            ).scalar_one()
            rows = conn.execute(page).all()
        return [Score(**row._mapping) for row in rows], total

    def latest_ranking(
        self,
        manager: str | None = None,
        band: str | None = None,
        search: str | None = None,
        limit: int = MAX_PAGE,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> tuple[list[tuple[str, datetime, float]], int]:
        """(client id, as_of, revenue at risk) of each client's latest score, filtered as in
        ``latest_scores``, most revenue at risk first (then by id), at most ``limit`` of them;
        and the total matches. For a list sorted by something the store does not hold (the
        renewal date): it orders these, then reads the page's scores (``latest_scores_of``)."""
        if limit < 1:
            raise ValueError(f"need limit >= 1, not {limit}")
        matches = _current_scores().where(*_filters(manager, band, search), *where)
        keys = (
            matches.with_only_columns(scores.c.client_id, scores.c.as_of, scores.c.revenue_at_risk)
            .order_by(scores.c.revenue_at_risk.desc(), scores.c.client_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(matches.subquery())
            ).scalar_one()
            rows = conn.execute(keys).all()
        return [(r[0], r[1], r[2]) for r in rows], total

    def latest_scores_of(self, client_ids: Sequence[str]) -> dict[str, Score]:
        """The latest score (see ``latest_scores``) of each of these clients that has one."""
        if not client_ids:
            return {}
        query = _current_scores().where(scores.c.client_id.in_(list(client_ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {row.client_id: Score(**row._mapping) for row in rows}

    def latest_score(self, client_id: str) -> Score | None:
        """A client's latest score (see ``latest_scores``), or None if it was never scored."""
        with self.engine.connect() as conn:
            row = conn.execute(_current_scores().where(scores.c.client_id == client_id)).first()
        return None if row is None else Score(**row._mapping)

    def previous_score(self, client_id: str, before_as_of: datetime) -> Score | None:
        """A client's latest score strictly before ``before_as_of``: the base for "what changed".

        Among model versions that scored the same ``as_of``, the one written last.
        """
        params = {"client_id": client_id, "before": aware_utc(before_as_of)}
        with self.engine.connect() as conn:
            row = conn.execute(_PREVIOUS_SCORE, params).first()
        return None if row is None else Score(**row._mapping)

    def previous_summary(self, client_id: str, before_as_of: datetime) -> ScoreSummary | None:
        """The summary of ``previous_score`` (the same row): all "what changed" needs, cheaper."""
        values = {"client_id": client_id, "before": aware_utc(before_as_of)}
        with self.driver() as dbapi:  # prepared once: a request's read costs SQLite's own work
            row = self.prepared(_PREVIOUS_SUMMARY).first(dbapi, values)
        return None if row is None else ScoreSummary(**dict(zip(_SUMMARY, row, strict=True)))

    def previous_scores(
        self, before_as_of: datetime, source: Source | None = "batch"
    ) -> dict[str, ScoreSummary]:
        """Every client's latest score strictly before ``before_as_of``, by client id.

        One query for a whole batch instead of one ``previous_score`` per client; summaries
        only, since decoding every client's drivers and actions would cost more than the query.
        By default batch scores only, so that what the dashboard shows as "what changed" comes
        from the CRM data alone; ``source=None`` takes scores of either source. When every
        client's current score (``current_scores``: its latest batch score) is older than
        ``before_as_of``, those are read by key, without ranking the whole history.
        """
        before = aware_utc(before_as_of)
        with self.read_snapshot() as conn:  # the newest current score and the scores agree
            newest = conn.execute(sa.select(sa.func.max(current.c.as_of))).scalar_one()
            if _reads_current(newest, before, source):
                query = _CURRENT_SUMMARIES
            else:
                query = _ranked_summaries(before, source)
            read = functools.lru_cache(maxsize=None)(_as_of_reader(conn.dialect))
            return {
                c: ScoreSummary(client_id=c, as_of=read(a), model_version=v, probability=p, band=b)
                for c, a, v, p, b in conn.execute(query)
            }

    def client_history(self, client_id: str) -> list[Score]:
        """All of a client's scores, oldest ``as_of`` first (same ``as_of``: in write order)."""
        query = (
            sa.select(scores)
            .where(scores.c.client_id == client_id)
            .order_by(scores.c.as_of, scores.c.created_at, scores.c.id)
        )
        with self.engine.connect() as conn:
            return [Score(**row._mapping) for row in conn.execute(query)]

    def audit_trail(self, client_id: str) -> list[AuditRecord]:
        """Every write of a client's scores, oldest first."""
        query = (
            sa.select(audit)
            .where(audit.c.client_id == client_id)
            .order_by(audit.c.scored_at, audit.c.id)
        )
        with self.engine.connect() as conn:
            return [AuditRecord(**row._mapping) for row in conn.execute(query)]

    # --- aggregates over the latest scores -------------------------------------------------------
    # Each takes an optional ``conn``: pass ``read_snapshot()``'s to see one state of the store
    # across several of them; without it each runs on a connection of its own.

    def latest_totals(
        self,
        conn: Connection | None = None,
        *,
        manager: str | None = None,
        band: str | None = None,
        search: str | None = None,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> tuple[int, float]:
        """Clients with a latest score, and their summed revenue at risk.

        The filters are ``latest_scores``'s: the totals of the clients it would list.
        """
        total = sa.func.coalesce(sa.func.sum(scores.c.revenue_at_risk), 0.0)
        query = _over_latest(sa.func.count(), total).where(*_filters(manager, band, search), *where)
        with self._reading(conn) as c:
            clients, revenue = c.execute(query).one()
        return int(clients), float(revenue)

    def latest_counts(
        self,
        conditions: Mapping[str, Sequence[ColumnElement[bool]]],
        conn: Connection | None = None,
        *,
        manager: str | None = None,
    ) -> dict[str, int]:
        """For each name, the clients whose latest score meets all its conditions (what
        ``latest_totals(where=conditions)`` counts), all in one pass over the book."""
        if not conditions:
            return {}
        counts = [
            sa.func.coalesce(sa.func.sum(sa.case((sa.and_(*where), 1), else_=0)), 0)
            for where in conditions.values()
        ]
        query = _over_latest(*counts).where(*_filters(manager, None, None))
        with self._reading(conn) as c:
            row = c.execute(query).one()
        return {name: int(n) for name, n in zip(conditions, row, strict=True)}

    def band_counts(
        self,
        conn: Connection | None = None,
        *,
        manager: str | None = None,
        search: str | None = None,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> dict[str, int]:
        """Clients by the risk band of their latest score; bands nobody is in are left out.

        ``manager`` and ``search`` filter as in ``latest_scores``.
        """
        query = _grouped(scores.c.band).where(*_filters(manager, None, search), *where)
        with self._reading(conn) as c:
            return {band: int(n) for band, n, _ in c.execute(query)}

    def probability_histogram(
        self, bins: int = 10, conn: Connection | None = None
    ) -> list[tuple[float, float, int]]:
        """Clients by the probability of their latest score in ``bins`` equal bins over [0, 1].

        Returns ``(lo, hi, clients)`` for every bin, lowest first. A bin holds ``lo <= p < hi``
        (the last one also ``p == 1``), the same side of an edge as ``explain.risk_band`` takes.
        """
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        # the bin is the number of inner edges at or below p: portable, unlike floor() or CAST
        bin_: ColumnElement[int] = sa.literal(0)
        for k in range(1, bins):
            bin_ = bin_ + sa.case((scores.c.probability >= k / bins, 1), else_=0)
        with self._reading(conn) as c:
            counts = {int(b): int(n) for b, n, _ in c.execute(_grouped(bin_))}
        return [(k / bins, (k + 1) / bins, counts.get(k, 0)) for k in range(bins)]

    def revenue_at_risk_by(
        self, column: str, conn: Connection | None = None
    ) -> list[tuple[str | None, float, int]]:
        """Revenue at risk and clients by a column of the latest scores, largest revenue first.

        ``column`` is one of ``GROUPINGS``. Empty text and NULL make one group, keyed None. Ties
        are ordered by clients (most first), then by key (A to Z, None last).
        """
        if column not in GROUPINGS:
            raise ValueError(f"column must be one of {', '.join(GROUPINGS)}, not {column!r}")
        query = _grouped(sa.func.nullif(scores.c[column], ""))
        revenue, clients, key = (query.selected_columns[n] for n in ("total", "clients", "key"))
        query = query.order_by(revenue.desc(), clients.desc(), key.asc().nulls_last())
        with self._reading(conn) as c:
            return [(k, float(r), int(n)) for k, n, r in c.execute(query)]


_NEWEST_FIRST = (scores.c.as_of.desc(), scores.c.created_at.desc(), scores.c.id.desc())
_SUMMARY = [f.name for f in dataclasses.fields(ScoreSummary)]
_RECORD_FIELDS = [f.name for f in dataclasses.fields(ScoreRecord)]


def _current_scores() -> sa.Select[Any]:
    """Each client's latest score: the one ``current_scores`` points at."""
    on = sa.and_(*(scores.c[name] == current.c[name] for name in _KEY_NAMES))
    return sa.select(scores).join(current, on)


def _previous(*columns: Any) -> sa.Select[Any]:
    """Columns of the latest score of ``:client_id`` strictly before ``:before``."""
    return (
        sa.select(*columns)
        .where(
            scores.c.client_id == sa.bindparam("client_id"),
            scores.c.as_of < sa.bindparam("before"),
        )
        .order_by(*_NEWEST_FIRST)
        .limit(1)
    )


# Built once: building a statement costs more than SQLite takes to run it.
_PREVIOUS_SCORE = _previous(scores)
_PREVIOUS_SUMMARY = _previous(*(scores.c[name] for name in _SUMMARY))
_AUDIT_COLUMNS = [*_KEY_NAMES, "feature_digest", "scored_at"]
_AUDIT_INSERT = audit.insert().inline()  # inline: no RETURNING of the new ids (PostgreSQL)


def _reads_current(newest: datetime | None, before: datetime, source: Source | None) -> bool:
    """Whether each client's current score is its latest batch score before ``before``."""
    return source == "batch" and (newest is None or newest < before)


def _ranked_summaries(before: datetime, source: Source | None) -> sa.Select[Any]:
    """``previous_scores``' rows by ranking each client's scores before ``before``."""
    rank = sa.func.row_number().over(partition_by=scores.c.client_id, order_by=_NEWEST_FIRST)
    fields = [scores.c[name] for name in _SUMMARY]
    conditions = [scores.c.as_of < before]
    if source is not None:
        conditions.append(scores.c.source == source)
    ranked = sa.select(*fields, rank.label("rank")).where(*conditions).subquery()
    return sa.select(*(_unread(ranked.c[name]) for name in _SUMMARY)).where(ranked.c.rank == 1)


def _unread(column: Any) -> Any:
    """A column as the driver sends it: as_of is read once per distinct value instead."""
    return sa.type_coerce(column, sa.String()).label("as_of") if column.name == "as_of" else column


def _as_of_reader(dialect: Any) -> Any:
    """What SQLAlchemy makes of an as_of the driver sends (``UTCDateTime``)."""
    process = scores.c.as_of.type.dialect_impl(dialect).result_processor(dialect, None)
    return process or (lambda value: value)


_CURRENT_SUMMARIES = sa.select(*(_unread(scores.c[name]) for name in _SUMMARY)).join(
    current, sa.and_(*(scores.c[name] == current.c[name] for name in _KEY_NAMES))
)  # each client's latest batch score


def _over_latest(*columns: Any) -> sa.Select[Any]:
    """A SELECT of the given columns or aggregates over each client's latest score."""
    on = sa.and_(*(scores.c[name] == current.c[name] for name in _KEY_NAMES))
    return sa.select(*columns).select_from(scores.join(current, on))


def _grouped(key: ColumnElement[Any]) -> sa.Select[Any]:
    """key, clients and their total revenue at risk per value of ``key`` over the latest scores."""
    return _over_latest(
        key.label("key"),
        sa.func.count().label("clients"),
        sa.func.sum(scores.c.revenue_at_risk).label("total"),
    ).group_by(key)


def _filters(
    manager: str | None, band: str | None, search: str | None
) -> list[ColumnElement[bool]]:
    """WHERE conditions on ``scores`` for ``latest_scores``."""
    conditions: list[ColumnElement[bool]] = []
    if manager == "":  # the unassigned: no manager, or an empty one
        conditions.append(sa.func.coalesce(scores.c.account_manager, "") == "")
    elif manager is not None:
        conditions.append(scores.c.account_manager == manager)
    if band is not None:
        conditions.append(scores.c.band == band)
    if search:
        conditions.append(
            sa.or_(
                scores.c.client_id.icontains(search, autoescape=True),
                scores.c.client_name.icontains(search, autoescape=True),
            )
        )
    return conditions


def _incoming_rows(
    records: Iterable[ScoreRecord], now: datetime, source: Source
) -> list[dict[str, Any]]:
    """The batch as scratch-table rows, one per score key: the last record of a key wins."""
    batch: dict[tuple[str, datetime, str], dict[str, Any]] = {}
    for record in records:
        row = _incoming_row(record, now, source)
        key = (row["client_id"], row["as_of"], row["model_version"])
        batch.pop(key, None)  # a key's place in the batch is where it was last given
        batch[key] = row
    rows = list(batch.values())
    for seq, row in enumerate(rows):
        row["seq"] = seq
    return rows


def _incoming_row(record: ScoreRecord, now: datetime, source: Source) -> dict[str, Any]:
    """A row of the scratch table: the record, the write time and where the score comes from."""
    row = {name: getattr(record, name) for name in _RECORD_FIELDS}
    row["as_of"] = _utc_cached(record.as_of)
    row["created_at"] = now
    row["source"] = source
    return row
