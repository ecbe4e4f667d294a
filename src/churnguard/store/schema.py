"""The store's tables: one ``metadata`` with every table, their column types and text limits.

Each table's queries live in the module named for it (``scores``, ``actions``, ``followups``,
``keys``, ``sessions``, ``alerts``, ``runs``); this module only declares the tables, so
``Database.create()`` makes the whole schema. ``TEXT_LIMITS`` says how long each stored text may
be, taken from the data contract for what comes from CRM records (the API's request schema applies
the same contract limits) and from here for the rest (the API's other schemas import it): nothing
the API admits is too long to store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from churnguard.domain.contract import TABLES
from churnguard.domain.timeaxis import utc_datetime

Source = Literal["batch", "api"]
SOURCES: tuple[Source, ...] = ("batch", "api")
ROLES = ("crm", "manager", "admin")  # what an API key may do; the rules are in keys.py

_CLIENTS = TABLES["clients"]

# The longest text each column takes, by column name (the same name means the same limit). What
# comes from CRM records is the data contract's limit, which the API's request schema applies too.
TEXT_LIMITS: Final[dict[str, int]] = {
    "client_id": _CLIENTS.column("client_id").text_length,
    "client_name": _CLIENTS.column("name").text_length,
    "account_manager": _CLIENTS.column("account_manager").text_length,
    "segment": _CLIENTS.column("segment").text_length,
    "model_version": 100,
    "band": 20,
    "action_type": 100,
    "logged_by": 200,
    "key_label": 200,
}
_DIGEST = 64  # a SHA-256 in hex; feature digests: "f64:" and 60 hex digits (store/columns.py)
_KEY_ID = 32


def aware_utc(value: datetime) -> datetime:
    """A timezone-aware datetime as a plain ``datetime`` in UTC; naive ones are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no timezone; pass a UTC-aware datetime")
    v = utc_datetime(value)  # a plain datetime below, not a subclass such as pandas' Timestamp
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC (SQLite keeps it as naive text) and read back UTC-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = aware_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc_datetime(value)


def _text(name: str) -> sa.String:
    return sa.String(TEXT_LIMITS[name])


_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData()

scores = sa.Table(
    "scores",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("client_id", _text("client_id"), nullable=False),
    sa.Column("as_of", UTCDateTime(), nullable=False),
    sa.Column("model_version", _text("model_version"), nullable=False),
    sa.Column("probability", sa.Float(), nullable=False),
    sa.Column("band", _text("band"), nullable=False),
    sa.Column("revenue_at_risk", sa.Float(), nullable=False),
    sa.Column("monthly_value", sa.Float(), nullable=False),
    sa.Column("account_manager", _text("account_manager")),
    sa.Column("segment", _text("segment")),
    sa.Column("client_name", _text("client_name")),
    sa.Column("drivers", _JSON, nullable=False),
    sa.Column("actions", _JSON, nullable=False),
    sa.Column("change", _JSON, nullable=False),
    sa.Column("curve", _JSON),  # horizons and renewal (scoring.horizons); null: none
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("source", sa.String(10), nullable=False),
    sa.UniqueConstraint("client_id", "as_of", "model_version", "source", name="uq_scores_key"),
    sa.CheckConstraint("probability >= 0 AND probability <= 1", name="ck_scores_probability"),
    sa.CheckConstraint(f"source IN {SOURCES}", name="ck_scores_source"),
    sa.Index("ix_scores_manager", "account_manager"),
)

# A score is identified by these columns: a score from the API and one from a batch run at the
# same (client, as_of, model version) are two scores, and neither overwrites the other.
SCORE_KEY = ("client_id", "as_of", "model_version", "source")

# Each client's latest batch score, kept up to date by save_scores so that listing the latest
# scores does not rank the whole history on every dashboard page. Only scores from the CRM data
# (source "batch") are current: a score request never decides what the dashboard shows.
current = sa.Table(
    "current_scores",
    metadata,
    sa.Column("client_id", _text("client_id"), primary_key=True),
    sa.Column("as_of", UTCDateTime(), nullable=False),
    sa.Column("model_version", _text("model_version"), nullable=False),
    sa.Column("source", sa.String(10), nullable=False),
    sa.ForeignKeyConstraint(
        SCORE_KEY, [f"scores.{name}" for name in SCORE_KEY], name="fk_current_score"
    ),
    sa.CheckConstraint("source = 'batch'", name="ck_current_from_batch"),
)

audit = sa.Table(
    "score_audit",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("client_id", _text("client_id"), nullable=False),
    sa.Column("as_of", UTCDateTime(), nullable=False),
    sa.Column("model_version", _text("model_version"), nullable=False),
    sa.Column("feature_digest", sa.String(_DIGEST), nullable=False),
    sa.Column("source", sa.String(10), nullable=False),
    sa.Column("scored_at", UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(
        SCORE_KEY, [f"scores.{name}" for name in SCORE_KEY], name="fk_audit_score"
    ),
    sa.CheckConstraint(f"source IN {SOURCES}", name="ck_audit_source"),
    sa.Index("ix_audit_score", *SCORE_KEY),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("client_id", _text("client_id"), nullable=False, index=True),
    sa.Column("action_type", _text("action_type"), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("happened_on", sa.Date(), nullable=False),
    sa.Column("logged_by", _text("logged_by"), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# The next step planned with a logged action, and when it is due (one row per action at most).
follow_ups = sa.Table(
    "follow_ups",
    metadata,
    sa.Column("action_id", _ID, primary_key=True),
    sa.Column("client_id", _text("client_id"), nullable=False, index=True),
    sa.Column("next_step", sa.Text(), nullable=False),
    sa.Column("due_on", sa.Date(), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(_KEY_ID), primary_key=True),
    sa.Column("secret_hash", sa.String(_DIGEST), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("manager", _text("account_manager")),
    sa.Column("label", _text("key_label")),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
    sa.CheckConstraint(f"role IN {ROLES}", name="ck_api_keys_role"),
    sa.CheckConstraint(
        "(role = 'manager') = (manager IS NOT NULL)", name="ck_api_keys_manager_bound"
    ),
)

# Dashboard sign-ins: a session token's hash, the key it was started with, its expiry.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("token_hash", sa.String(_DIGEST), primary_key=True),
    sa.Column("key_id", sa.String(_KEY_ID), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

# Alert items delivered, one row per item and channel: a re-run sends nothing twice.
alerts_sent = sa.Table(
    "alerts_sent",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("dedupe_key", sa.String(300), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("client_id", _text("client_id"), nullable=False, index=True),
    sa.Column("account_manager", _text("account_manager")),
    sa.Column("recipient", sa.String(500), nullable=False),
    sa.Column("as_of", UTCDateTime()),
    sa.Column("sent_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("dedupe_key", "channel", name="uq_alerts_sent_key"),
)

# One row per `churnguard score` run: what it covered (runs.py). Skipped clients are counted by
# reason ({"ended": 12, "not_started": 2}, the reasons of domain.coverage), never listed.
scoring_runs = sa.Table(
    "scoring_runs",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("as_of", UTCDateTime(), nullable=False),
    sa.Column("model_version", _text("model_version"), nullable=False),
    sa.Column("source", sa.String(500), nullable=False),  # the CRM data: folder or URL
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=False),
    sa.Column("n_clients", sa.Integer(), nullable=False),  # in the clients table
    sa.Column("n_active", sa.Integer(), nullable=False),  # active at as_of: to be scored
    sa.Column("n_scored", sa.Integer(), nullable=False),
    sa.Column("skipped", _JSON, nullable=False),  # reason -> clients
    sa.Column("note", sa.Text()),  # why as_of was chosen, when it was not the end of the data
    sa.Index("ix_scoring_runs_started", "started_at"),
)

# A batch being saved: loaded in bulk, then merged into the tables above by SQL. Temporary (per
# connection) and without constraints, so that a bad row fails at the merge with a clear message.
incoming = sa.Table(
    "incoming_scores",
    sa.MetaData(),
    *(sa.Column(c.name, c.type) for c in scores.columns if c.name != "id"),
    sa.Column("feature_digest", sa.String(_DIGEST)),
    sa.Column("seq", sa.Integer()),
    prefixes=["TEMPORARY"],
)
