"""Scoring runs: the ``scoring_runs`` table, one row per `churnguard score` run and what it covered.

A run records its as_of, the model version, where the CRM data came from, when it started and
finished, how many clients were active at as_of, how many it scored, and how many it skipped by
reason (``domain.coverage.SKIP_REASONS``). The table is declared in ``schema`` with every other;
``Database.create()`` makes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from churnguard.domain.coverage import SKIP_REASONS, Coverage
from churnguard.store.database import Database, engine_of
from churnguard.store.schema import scoring_runs

_SOURCE_LENGTH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringRun:
    """One scoring run and its coverage."""

    as_of: datetime
    model_version: str
    source: str  # the CRM data: a folder, or a database URL without its password
    started_at: datetime
    finished_at: datetime
    n_clients: int  # clients in the data
    n_active: int  # active at as_of: the clients the run is meant to score
    n_scored: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> clients not scored
    note: str | None = None  # why as_of is not the end of the data, when it is not
    id: int | None = None  # set once stored

    @classmethod
    def of(
        cls,
        coverage: Coverage,
        *,
        model_version: str,
        n_scored: int,
        source: str,
        started_at: datetime,
        note: str = "",
    ) -> ScoringRun:
        """A run that has just finished, from the coverage of its as_of."""
        return cls(
            as_of=coverage.as_of.to_pydatetime(),
            model_version=model_version,
            source=data_source(source),
            started_at=started_at,
            finished_at=datetime.now(UTC),
            n_clients=coverage.clients,
            n_active=coverage.active,
            n_scored=n_scored,
            skipped={k: n for k, n in coverage.skipped.items() if n},
            note=note or None,
        )

    @property
    def reasons(self) -> list[str]:
        """The skipped clients by reason, in words: '12 every contract stopped on or before ...'."""
        return [f"{n:,} {SKIP_REASONS.get(k, k)}" for k, n in self.skipped.items() if n]

    @property
    def complete(self) -> bool:
        """Whether every active client was scored."""
        return self.n_scored == self.n_active

    def format(self) -> str:
        """One line: '2025-06-01 model 7 (batch from crm/): scored 506 of 506 active ...'."""
        skipped = "; ".join(self.reasons)
        missed = "" if self.complete else f" ({self.n_active - self.n_scored:,} NOT SCORED)"
        seconds = (self.finished_at - self.started_at).total_seconds()
        return (
            f"{self.as_of:%Y-%m-%d}  model {self.model_version}  scored {self.n_scored:,} of "
            f"{self.n_active:,} active{missed}, {self.n_clients:,} clients; skipped "
            f"{self.n_clients - self.n_active:,}{f' ({skipped})' if skipped else ''}  "
            f"[{self.started_at:%Y-%m-%d %H:%M} UTC, {seconds:.0f} s, {self.source}]"
        )


_SECRET_WORDS = ("pass", "secret", "token", "key")  # query parameters left out of a stored URL


def data_source(source: str) -> str:
    """Where CRM data came from, as stored: a folder, or a database URL without its password."""
    if "://" not in source:
        return source
    try:
        url = sa.make_url(source)
        secret = [k for k in url.query if any(w in k.lower() for w in _SECRET_WORDS)]
        return url.difference_update_query(secret).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return source.split("://", 1)[0] + "://..."


def record_run(db: Database, run: ScoringRun) -> int:
    """Store a run; returns its id."""
    row = asdict(run)
    row.pop("id")
    row["source"] = row["source"][:_SOURCE_LENGTH]
    row["skipped"] = {str(k): int(v) for k, v in run.skipped.items()}
    with engine_of(db).begin() as conn:
        key = conn.execute(scoring_runs.insert().values(**row)).inserted_primary_key
    return int(key[0]) if key else 0


def latest_runs(db: Database, limit: int = 10) -> list[ScoringRun]:
    """The latest runs, newest first."""
    query = (
        sa.select(scoring_runs)
        .order_by(scoring_runs.c.started_at.desc(), scoring_runs.c.id.desc())
        .limit(limit)
    )
    with engine_of(db).connect() as conn:
        return [ScoringRun(**row._asdict()) for row in conn.execute(query)]
