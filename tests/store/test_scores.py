"""The score store on SQLite and, when CHURNGUARD_TEST_POSTGRES_URL is set, on PostgreSQL."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from churnguard.store import scores as scores_module
from churnguard.store.database import to_json
from churnguard.store.schema import TEXT_LIMITS, audit, scores
from churnguard.store.scores import (
    ScoreRecord,
    ScoreStore,
    ScoreSummary,
    change_texts,
    describe_change,
    feature_digest,
)

JAN = datetime(2025, 1, 1, tzinfo=UTC)
FEB = datetime(2025, 2, 1, tzinfo=UTC)
MAR = datetime(2025, 3, 1, tzinfo=UTC)


def record(client_id: str = "C1", as_of: datetime = JAN, **values: Any) -> ScoreRecord:
    """A score with plausible values; keyword arguments override any field."""
    fields: dict[str, Any] = {
        "model_version": "1",
        "probability": 0.4,
        "band": "medium",
        "revenue_at_risk": 4800.0,
        "monthly_value": 1000.0,
        "feature_digest": feature_digest({"days_since_contact": 74, "client_id": client_id}),
        "account_manager": "Ana",
        "segment": "smb",
        "client_name": f"Client {client_id}",
        "drivers": [
            {
                "feature": "days_since_contact",
                "value": 74.0,
                "contribution": 0.31,
                "reason": "No contact for 74 days",
            }
        ],
        "actions": [{"action": "Schedule a check-in call", "feature": "days_since_contact"}],
        "change": {"direction": "new"},
    }
    fields.update(values)
    return ScoreRecord(client_id=client_id, as_of=as_of, **fields)


def row_count(store: ScoreStore, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


# --- writing ------------------------------------------------------------------------------------


def test_create_is_idempotent_and_makes_every_table(store: ScoreStore) -> None:
    store.create()
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"scores", "current_scores", "score_audit", "actions", "api_keys"} <= names


def test_saved_score_reads_back_whole(store: ScoreStore) -> None:
    saved = record(change={"direction": "rising", "delta": 0.2})
    assert store.save_scores([saved]) == 1
    score = store.latest_score("C1")
    assert score is not None
    assert (score.client_id, score.as_of, score.model_version) == ("C1", JAN, "1")
    assert (score.probability, score.band, score.revenue_at_risk) == (0.4, "medium", 4800.0)
    assert (score.account_manager, score.segment, score.client_name) == ("Ana", "smb", "Client C1")
    assert score.drivers == saved.drivers
    assert score.actions == saved.actions
    assert score.change == {"direction": "rising", "delta": 0.2}
    assert score.as_of.tzinfo is not None and score.created_at.tzinfo is not None


def test_same_client_as_of_and_version_twice_keeps_one_row_with_new_values(
    store: ScoreStore,
) -> None:
    store.save_scores([record(probability=0.4, band="medium")])
    store.save_scores([record(probability=0.9, band="high", account_manager="Ben")])
    assert row_count(store, "scores") == 1
    score = store.latest_score("C1")
    assert score is not None
    assert (score.probability, score.band, score.account_manager) == (0.9, "high", "Ben")


def test_duplicates_within_one_batch_keep_the_last(store: ScoreStore) -> None:
    written = store.save_scores([record(probability=0.1), record(probability=0.7)])
    assert written == 1
    assert [s.probability for s in store.client_history("C1")] == [0.7]


def test_a_new_model_version_adds_a_row(store: ScoreStore) -> None:
    store.save_scores([record(model_version="1")])
    store.save_scores([record(model_version="2", probability=0.8)])
    assert row_count(store, "scores") == 2
    latest = store.latest_score("C1")
    assert latest is not None and latest.model_version == "2"


def test_json_keeps_numpy_numbers_and_stores_nan_as_null(store: ScoreStore) -> None:
    drivers = [
        {"feature": "nps", "value": float("nan"), "contribution": np.float32(0.25), "reason": "-"},
        {"feature": "tickets", "value": np.int64(3), "contribution": np.float64(0.5), "reason": ""},
    ]
    store.save_scores([record(drivers=drivers, change={"direction": "new", "delta": np.nan})])
    score = store.latest_score("C1")
    assert score is not None
    assert [(d["value"], d["contribution"]) for d in score.drivers] == [(None, 0.25), (3, 0.5)]
    assert score.change == {"direction": "new", "delta": None}


def test_as_of_in_another_timezone_is_the_same_instant(store: ScoreStore) -> None:
    paris = JAN.astimezone(timezone(timedelta(hours=1)))
    store.save_scores([record(as_of=JAN, probability=0.2)])
    store.save_scores([record(as_of=paris, probability=0.3)])
    assert [(s.as_of, s.probability) for s in store.client_history("C1")] == [(JAN, 0.3)]


def test_naive_as_of_is_refused(store: ScoreStore) -> None:
    with pytest.raises(ValueError, match="no timezone"):
        store.save_scores([record(as_of=datetime(2025, 1, 1))])


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"band": None}, id="score-not-null"),
        pytest.param({"feature_digest": None}, id="audit-not-null"),  # fails after the scores
    ],
)
def test_a_failing_batch_writes_nothing(store: ScoreStore, broken: dict[str, Any]) -> None:
    store.save_scores([record("C1", probability=0.2)])
    batch = [record("C1", probability=0.9), record("C2"), record("C3", **broken), record("C4")]
    with pytest.raises(sa.exc.IntegrityError):
        store.save_scores(batch)
    assert row_count(store, "scores") == 1
    assert row_count(store, "current_scores") == 1
    assert row_count(store, "score_audit") == 1
    kept = store.latest_score("C1")
    assert kept is not None and kept.probability == 0.2
    assert store.latest_score("C2") is None
    assert store.save_scores([record("C2")]) == 1  # the store still works afterwards


def test_probability_outside_0_1_is_refused(store: ScoreStore) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        store.save_scores([record(probability=1.5)])
    assert row_count(store, "scores") == 0


def test_unknown_source_is_refused(store: ScoreStore) -> None:
    with pytest.raises(ValueError, match="source"):
        store.save_scores([record()], source="nightly")  # type: ignore[arg-type]


def test_an_empty_batch_writes_nothing(store: ScoreStore) -> None:
    assert store.save_scores([]) == 0
    assert row_count(store, "scores") == 0


def test_every_write_leaves_an_audit_record(store: ScoreStore) -> None:
    first = feature_digest({"days_since_contact": 74})
    second = feature_digest({"days_since_contact": 80})
    store.save_scores([record(feature_digest=first)], source="batch")
    store.save_scores([record(feature_digest=second)], source="api")
    store.save_scores([record("C2")])
    trail = store.audit_trail("C1")
    assert [(a.feature_digest, a.source) for a in trail] == [(first, "batch"), (second, "api")]
    assert all((a.as_of, a.model_version) == (JAN, "1") for a in trail)
    assert trail[0].scored_at <= trail[1].scored_at
    assert row_count(store, "score_audit") == 3


# --- who owns a client: the CRM data (batch scores), never a score request ---------------------


def test_a_score_from_the_api_never_becomes_current(store: ScoreStore) -> None:
    store.save_scores([record("C1", JAN, account_manager="Ana")], source="batch")
    claim = record("C1", datetime(2099, 12, 31, tzinfo=UTC), account_manager="Mallory")
    store.save_scores([claim, record("NEW", JAN, account_manager="Mallory")], source="api")
    latest = store.latest_score("C1")
    assert latest is not None
    assert (latest.as_of, latest.account_manager, latest.source) == (JAN, "Ana", "batch")
    assert store.latest_score("NEW") is None  # only a batch run puts a client on the books
    assert [s.client_id for s in store.latest_scores(manager="Mallory")[0]] == []
    assert [s.client_id for s in store.latest_scores(manager="Ana")[0]] == ["C1"]
    assert [s.source for s in store.client_history("C1")] == ["batch", "api"]


def test_api_and_batch_scores_with_the_same_key_are_two_scores(store: ScoreStore) -> None:
    store.save_scores([record(probability=0.2, account_manager="Ana")], source="batch")
    store.save_scores([record(probability=0.9, account_manager="Ben")], source="api")
    store.save_scores([record(probability=0.8, account_manager="Ben")], source="api")
    history = store.client_history("C1")
    assert [(s.source, s.probability, s.account_manager) for s in history] == [
        ("batch", 0.2, "Ana"),
        ("api", 0.8, "Ben"),  # the API's own score of that key takes the new values
    ]
    latest = store.latest_score("C1")
    assert latest is not None and (latest.probability, latest.account_manager) == (0.2, "Ana")
    store.save_scores([record(probability=0.3, account_manager="Ana")], source="batch")
    latest = store.latest_score("C1")
    assert latest is not None and latest.probability == 0.3


def test_a_batch_compares_with_batch_scores_only(store: ScoreStore) -> None:
    store.save_scores([record("C1", JAN, probability=0.2)], source="batch")
    store.save_scores([record("C1", FEB, probability=0.9)], source="api")
    previous = store.previous_scores(MAR)
    assert (previous["C1"].as_of, previous["C1"].probability) == (JAN, 0.2)
    either = store.previous_scores(MAR, source=None)
    assert (either["C1"].as_of, either["C1"].probability) == (FEB, 0.9)


# --- reading ------------------------------------------------------------------------------------


def book(store: ScoreStore) -> None:
    """Five clients of two managers; C5's January score is superseded in February."""
    store.save_scores(
        [
            record("C1", account_manager="Ana", band="high", revenue_at_risk=9000.0),
            record("C2", account_manager="Ana", band="low", revenue_at_risk=100.0),
            record("C3", account_manager="Ana", band="high", revenue_at_risk=12000.0),
            record("C4", account_manager="Ben", band="high", revenue_at_risk=50000.0),
            record("C5", account_manager="Ana", band="high", revenue_at_risk=70000.0),
        ]
    )
    # C5 moved to Ben and fell to a low band: only the February score counts now
    store.save_scores([record("C5", FEB, account_manager="Ben", band="low", revenue_at_risk=10.0)])


def test_latest_scores_filters_by_manager_and_band_and_orders_by_revenue_at_risk(
    store: ScoreStore,
) -> None:
    book(store)
    rows, total = store.latest_scores(manager="Ana", band="high")
    assert [r.client_id for r in rows] == ["C3", "C1"]
    assert total == 2
    rows, total = store.latest_scores(manager="Ben")
    assert [(r.client_id, r.as_of) for r in rows] == [("C4", JAN), ("C5", FEB)]
    rows, total = store.latest_scores()
    assert [r.client_id for r in rows] == ["C4", "C3", "C1", "C2", "C5"]
    assert total == 5


def test_latest_scores_other_orders(store: ScoreStore) -> None:
    book(store)
    rows, _ = store.latest_scores(order_by="client_id")
    assert [r.client_id for r in rows] == ["C1", "C2", "C3", "C4", "C5"]
    with pytest.raises(ValueError, match="order_by"):
        store.latest_scores(order_by="name; DROP TABLE scores")


def test_latest_scores_pages_with_the_total_of_all_matches(store: ScoreStore) -> None:
    store.save_scores(
        [record(f"C{i:02d}", revenue_at_risk=float(i)) for i in range(23)]
        + [record("X", account_manager="Ben")]
    )
    pages = [store.latest_scores(manager="Ana", limit=10, offset=o) for o in (0, 10, 20, 30)]
    assert [len(rows) for rows, _ in pages] == [10, 10, 3, 0]
    assert {total for _, total in pages} == {23}
    ids = [r.client_id for rows, _ in pages for r in rows]
    assert ids == [f"C{i:02d}" for i in reversed(range(23))]
    with pytest.raises(ValueError, match="limit"):
        store.latest_scores(limit=0)


def test_latest_ranking_and_scores_of_agree_with_latest_scores(store: ScoreStore) -> None:
    """The renewal order's two reads: every match's key in revenue order, then whole scores."""
    book(store)
    store.save_scores([record("C1", FEB, revenue_at_risk=1.0)])  # a newer score, other values
    for filters in ({}, {"manager": "Ana"}, {"manager": "Ana", "band": "high"}, {"search": "c4"}):
        rows, total = store.latest_scores(**filters)  # type: ignore[arg-type]
        ranked, ranked_total = store.latest_ranking(**filters)  # type: ignore[arg-type]
        assert ranked == [(r.client_id, r.as_of, r.revenue_at_risk) for r in rows]
        assert ranked_total == total
        assert store.latest_scores_of([c for c, _, _ in ranked]) == {r.client_id: r for r in rows}
    ranked, total = store.latest_ranking(limit=2)
    assert len(ranked) == 2 and total == 5
    assert store.latest_scores_of([]) == {} and store.latest_scores_of(["nobody"]) == {}
    with pytest.raises(ValueError, match="limit"):
        store.latest_ranking(limit=0)


def test_latest_scores_search_matches_id_or_name_ignoring_case(store: ScoreStore) -> None:
    store.save_scores(
        [
            record("A-100", client_name="Northwind Traders"),
            record("B-200", client_name="Contoso"),
            record("C-300", client_name="100% Digital"),
        ]
    )
    found = {r.client_id for r in store.latest_scores(search="northWIND")[0]}
    assert found == {"A-100"}
    assert {r.client_id for r in store.latest_scores(search="100")[0]} == {"A-100", "C-300"}
    assert {r.client_id for r in store.latest_scores(search="100%")[0]} == {"C-300"}


def test_latest_score_prefers_the_newest_as_of_even_if_written_earlier(store: ScoreStore) -> None:
    store.save_scores([record(as_of=FEB, probability=0.6)])
    store.save_scores([record(as_of=JAN, probability=0.1)])  # a late backfill
    latest = store.latest_score("C1")
    assert latest is not None and (latest.as_of, latest.probability) == (FEB, 0.6)
    rows, _ = store.latest_scores()
    assert [(r.as_of, r.probability) for r in rows] == [(FEB, 0.6)]


def test_latest_score_of_an_unknown_client_is_none(store: ScoreStore) -> None:
    assert store.latest_score("nobody") is None


def test_client_history_is_in_as_of_order(store: ScoreStore) -> None:
    store.save_scores([record(as_of=MAR, probability=0.3), record("C2", as_of=JAN)])
    store.save_scores([record(as_of=JAN, probability=0.1)])
    store.save_scores([record(as_of=FEB, probability=0.2)])
    history = store.client_history("C1")
    assert [(s.as_of, s.probability) for s in history] == [(JAN, 0.1), (FEB, 0.2), (MAR, 0.3)]


def test_previous_score_is_the_latest_before_the_date(store: ScoreStore) -> None:
    store.save_scores([record(as_of=d, probability=p) for d, p in ((JAN, 0.1), (FEB, 0.2))])
    store.save_scores([record(as_of=MAR, probability=0.3)])
    previous = store.previous_score("C1", MAR)
    assert previous is not None and (previous.as_of, previous.probability) == (FEB, 0.2)
    assert store.previous_score("C1", JAN) is None
    assert store.previous_score("C2", MAR) is None


def test_previous_summary_is_the_previous_scores_summary(store: ScoreStore) -> None:
    store.save_scores([record(as_of=JAN, probability=0.1), record("C2", JAN)])
    store.save_scores([record(as_of=FEB, model_version="2", probability=0.3, band="high")])
    store.save_scores([record(as_of=FEB, model_version="1", probability=0.2)])  # written last
    store.save_scores([record(as_of=MAR, probability=0.9)])
    summary_fields = [f.name for f in fields(ScoreSummary)]
    for client_id, before in [("C1", MAR), ("C1", FEB), ("C1", FEB + timedelta(seconds=1))]:
        full = store.previous_score(client_id, before)
        assert full is not None
        expected = ScoreSummary(**{name: getattr(full, name) for name in summary_fields})
        assert store.previous_summary(client_id, before) == expected
    summary = store.previous_summary("C1", MAR)
    assert summary is not None and (summary.model_version, summary.probability) == ("1", 0.2)
    assert store.previous_summary("C1", JAN) is None
    assert store.previous_summary("C3", MAR) is None


def test_previous_scores_for_a_whole_batch(store: ScoreStore) -> None:
    store.save_scores([record("C1", JAN, probability=0.1), record("C2", JAN, probability=0.5)])
    store.save_scores([record("C1", FEB, probability=0.2), record("C3", MAR)])
    previous = store.previous_scores(MAR)
    assert {c: (s.as_of, s.probability) for c, s in previous.items()} == {
        "C1": (FEB, 0.2),
        "C2": (JAN, 0.5),
    }


def test_describe_change() -> None:
    assert describe_change(None, 0.4) == {"direction": "new"}
    stored = ScoreSummary(
        client_id="C1", as_of=JAN, model_version="1", probability=0.30, band="medium"
    )
    assert describe_change(stored, 0.50)["direction"] == "rising"
    assert describe_change(stored, 0.10)["direction"] == "falling"
    steady = describe_change(stored, 0.32)
    assert steady["direction"] == "steady"
    assert steady["delta"] == pytest.approx(0.02)
    assert (steady["previous_probability"], steady["previous_band"]) == (0.30, "medium")


def test_previous_scores_read_from_the_current_ones_are_those_of_the_whole_history(
    store: ScoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def batch(as_of: datetime, version: str, clients: range, source: str = "batch") -> None:
        store.save_scores(
            [record(f"C{i}", as_of=as_of, model_version=version, probability=i / 10)
             for i in clients], source=source,
        )  # fmt: skip

    batch(JAN, "1", range(6))
    batch(FEB, "1", range(3))
    batch(FEB, "2", range(1, 5))  # a second model at the same as_of, written later
    batch(JAN, "2", range(4, 8))  # an older as_of written last: not current
    batch(MAR, "1", range(2), source="api")  # never current, never "previous" by default
    batch(FEB, "1", range(1))  # rewritten: the latest write of that as_of again
    after = MAR + timedelta(days=1)
    fast = store.previous_scores(after)
    monkeypatch.setattr(scores_module, "_reads_current", lambda *_: False)
    ranked = store.previous_scores(after)
    assert fast == ranked and len(fast) == 8
    assert fast["C0"].model_version == "1" and fast["C2"].model_version == "2"
    assert (fast["C5"].as_of, fast["C7"].model_version) == (JAN, "2")


def test_change_texts_are_the_json_of_describe_change() -> None:
    def summary(p: Any, band: str = "medium", as_of: datetime = JAN) -> ScoreSummary:
        return ScoreSummary(
            client_id="C1", as_of=as_of, model_version="1", probability=p, band=band
        )

    cases = [
        (None, 0.4),
        (summary(0.3), 0.3),  # a delta of 0.0
        (summary(0.3), 0.35),  # at the tolerance, from either side
        (summary(0.35), 0.3),
        (summary(0.1 + 0.2), 0.3000000001),
        (summary(0.123456789), 0.9876543),
        (summary(1e-300), 0.5),
        (summary(0.5, 'say "hi" «é»', datetime(2025, 1, 1, 12, 30, 15, tzinfo=UTC)), 0.2),
        (summary(1, "high"), 0.2),  # an int: the slow path
        (summary(float("nan")), 0.2),  # not finite: the slow path, NaN as null
    ]
    expected = [to_json(describe_change(before, q)) for before, q in cases]
    assert change_texts([b for b, _ in cases], [q for _, q in cases]) == expected


def test_feature_digest_ignores_order_and_sees_values() -> None:
    a = feature_digest({"x": 1.5, "n": 3})
    assert a == feature_digest({"n": np.int64(3), "x": np.float64(1.5)})
    assert a != feature_digest({"x": 1.5, "n": 4})
    assert len(a) == 64


def test_foreign_keys_are_enforced(store: ScoreStore) -> None:
    orphan = {
        "client_id": "C9",
        "as_of": JAN,
        "model_version": "1",
        "feature_digest": "0" * 64,
        "source": "batch",
        "scored_at": JAN,
    }
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(audit.insert().values(orphan))


def test_written_rows_keep_a_created_at(store: ScoreStore) -> None:
    before = datetime.now(UTC)
    store.save_scores([replace(record(), probability=0.5)])
    with store.engine.connect() as conn:
        created = conn.execute(sa.select(scores.c.created_at)).scalar_one()
    assert before - timedelta(seconds=5) <= created <= datetime.now(UTC) + timedelta(seconds=5)


def test_the_longest_texts_the_contract_admits_are_stored_whole(store: ScoreStore) -> None:
    longest = {
        name: ("é" * TEXT_LIMITS[name])
        for name in ("client_id", "client_name", "account_manager", "segment")
    }
    fields: dict[str, Any] = {k: v for k, v in longest.items() if k != "client_id"}
    store.save_scores([record(longest["client_id"], JAN, **fields)], source="batch")
    saved = store.latest_score(longest["client_id"])
    assert saved is not None
    assert (saved.client_name, saved.account_manager, saved.segment) == (
        longest["client_name"],
        longest["account_manager"],
        longest["segment"],
    )
