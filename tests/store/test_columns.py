"""Scores written from columns: the same digests and the same stored rows as from records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from churnguard.store import columns as columns_module
from churnguard.store.columns import (
    FORMAT_TAG,
    PER_ROW,
    ScoreRows,
    digest_format,
    digest_matches,
    feature_digest,
    feature_digests,
    json_feature_digest,
)
from churnguard.store.database import to_json
from churnguard.store.scores import ScoreRecord, ScoreStore

JAN = datetime(2025, 1, 1, tzinfo=UTC)


def test_column_digests_are_the_digests_of_each_rows_dict() -> None:
    numbers = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e16, 1e-7, 0.1 + 0.2, 3.0, 0.0])
    text = np.array(["a", None, 'say "hi"', "café", "a", None, "\x00", "b", "a", "c"], object)
    counts = np.arange(10, dtype=np.float64)
    columns = {"z_count": counts, "ä_text": text, "b_number": numbers}
    rows = [
        {
            "z_count": counts[i].item(),
            "ä_text": text[i],
            "b_number": None if np.isnan(numbers[i]) else numbers[i].item(),
        }
        for i in range(10)
    ]
    assert feature_digests(columns) == [feature_digest(r) for r in rows]
    assert len(set(feature_digests(columns))) == 10  # 0.0 and -0.0, None and "" are told apart


def test_column_digests_are_the_same_across_blocks_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=11) * 10.0 ** rng.integers(-6, 18, size=11)
    values[[2, 7]] = np.nan
    columns = {"x": values, "kind": np.array(["a", None, "b"] * 3 + ["a", "c"], object)}
    whole = feature_digests(columns)
    monkeypatch.setattr(columns_module, "_DIGEST_ROWS", 3)  # blocks of 3, 3, 3 and 2 rows
    assert feature_digests(columns) == whole
    rows = [
        {"x": None if np.isnan(x) else float(x), "kind": k}
        for x, k in zip(values, columns["kind"], strict=True)
    ]
    assert whole == [feature_digest(r) for r in rows]


def test_digests_carry_their_format_and_fit_the_audit_column() -> None:
    digest = feature_digest({"x": 1.5, "kind": "a", "gone": None})
    assert digest.startswith(FORMAT_TAG) and len(digest) == 64
    assert digest_format(digest) == "f64"
    assert digest == feature_digest({"gone": None, "kind": "a", "x": 1.5})  # any order
    # NaN is the engine's missing value: the same as None
    assert feature_digest({"x": float("nan")}) == feature_digest({"x": None})
    assert feature_digest({"x": 1.0}) != feature_digest({"y": 1.0})  # names count
    # a text and a number with the same bytes, or a missing text and a missing number
    assert feature_digest({"x": "1"}) != feature_digest({"x": 1.0})
    assert feature_digest({"x": None}) == feature_digests({"x": np.array([None], object)})[0]


def test_stored_digests_of_either_format_are_read() -> None:
    features = {"days_since_contact": 74.0, "segment": "smb", "nps": None}
    old, new = json_feature_digest(features), feature_digest(features)
    assert digest_format(old) == "json" and len(old) == 64 and old != new
    assert digest_matches(features, old) and digest_matches(features, new)
    changed = {**features, "days_since_contact": 75.0}
    assert not digest_matches(changed, old) and not digest_matches(changed, new)
    for bad in ("", "f64:xyz", "F" * 64, FORMAT_TAG + "0" * 64):
        with pytest.raises(ValueError, match="not a feature digest") as error:
            digest_format(bad)
        assert "xyz" not in str(error.value) and "FFFF" not in str(error.value)


@pytest.mark.parametrize(
    ("columns", "feature"),
    [
        ({"when": np.array(["2025-01-01"], "datetime64[D]")}, "when"),
        ({"mixed": np.array(["a", 3.0], object)}, "mixed"),
        ({"flag": np.array([True])}, "flag"),
    ],
)
def test_columns_that_are_not_numbers_or_text_are_refused_by_name(
    columns: dict[str, np.ndarray], feature: str
) -> None:
    with pytest.raises(TypeError, match=f"feature {feature!r}"):
        feature_digests(columns)


def test_values_that_are_not_numbers_or_text_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match="feature 'flag'"):
        feature_digest({"x": 1.0, "flag": True})


def _records(n: int, version: str) -> list[ScoreRecord]:
    return [
        ScoreRecord(
            client_id=f"C{i}",
            as_of=JAN,
            model_version=version,
            probability=i / n,
            band="low" if i < n / 2 else "high",
            revenue_at_risk=120.0 * i,
            monthly_value=10.0 * (i % 3),
            feature_digest=feature_digest({"x": float(i)}),
            change={"direction": "new"} if i % 2 else {"direction": "steady", "delta": 0.01},
            account_manager=None if i % 4 == 0 else "Ann",
            segment="smb",
            client_name=f"Client {i} «é»",
            drivers=[{"feature": "x", "value": float(i), "contribution": 0.5, "reason": "x"}],
            actions=[] if i % 3 else [{"action": "Call", "reason": "x", "feature": "x"}],
            curve=None if i % 2 else {"horizons": [{"days": 30, "probability": 0.1}]},
        )
        for i in range(n)
    ]


def _columns(records: list[ScoreRecord]) -> ScoreRows:
    nested = ("drivers", "actions", "change", "curve")
    columns: dict[str, Any] = {
        name: [to_json(getattr(r, name)) if name in nested else getattr(r, name) for r in records]
        for name in PER_ROW
    }
    return ScoreRows(as_of=records[0].as_of, model_version=records[0].model_version, **columns)


def _stored(store: ScoreStore, table: str, version: str) -> list[tuple[Any, ...]]:
    t = sa.Table(table, sa.MetaData(), autoload_with=store.engine)
    left_out = {"id", "created_at", "scored_at", "model_version"}
    kept = [c for c in t.columns if c.name not in left_out]
    query = sa.select(*kept).where(t.c.model_version == version).order_by(t.c.client_id)
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_rows_from_columns_are_stored_as_rows_from_records(store: ScoreStore) -> None:
    store.save_scores(_records(12, "1"))
    assert store.save_score_rows(_columns(_records(12, "2"))) == 12
    for table in ("scores", "score_audit"):
        assert _stored(store, table, "2") == _stored(store, table, "1")
    latest, total = store.latest_scores(limit=100)
    assert total == 12 and {s.model_version for s in latest} == {"2"}  # a batch: now current
    again = replace(_columns(_records(12, "2")), probability=[0.5] * 12)
    store.save_score_rows(again)  # the same key: rewritten, not added
    assert store.latest_scores(limit=100)[1] == 12
    assert {s.probability for s in store.latest_scores(limit=100)[0]} == {0.5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_id": ["C1", "C1", "C2"]}, "a client appears twice"),
        ({"band": ["low", "low"]}, "score columns of different lengths"),
    ],
)
def test_bad_columns_are_refused_before_anything_is_written(
    store: ScoreStore, change: dict[str, Any], message: str
) -> None:
    rows = replace(_columns(_records(3, "1")), **change)
    with pytest.raises(ValueError, match=message):
        store.save_score_rows(rows)
    assert store.latest_scores(limit=10)[1] == 0


def _part(rows: ScoreRows, part: slice) -> ScoreRows:
    return replace(rows, **{name: list(getattr(rows, name))[part] for name in PER_ROW})


def test_a_batch_written_in_parts_is_stored_as_written_at_once(store: ScoreStore) -> None:
    store.save_score_rows(_columns(_records(12, "1")))
    rows = _columns(_records(12, "2"))
    with store.score_rows_writer() as add:
        for part in (slice(0, 5), slice(5, 6), slice(6, 12)):
            add(_part(rows, part))
        assert store.latest_scores(limit=100)[0][0].model_version == "1"  # merged at the end
    for table in ("scores", "score_audit"):
        assert _stored(store, table, "2") == _stored(store, table, "1")
    assert {s.model_version for s in store.latest_scores(limit=100)[0]} == {"2"}


def test_a_client_in_two_parts_of_a_batch_writes_nothing(store: ScoreStore) -> None:
    rows = _columns(_records(6, "1"))
    with (
        pytest.raises(ValueError, match="a client appears twice"),
        store.score_rows_writer() as add,
    ):
        add(_part(rows, slice(0, 4)))
        add(_part(rows, slice(3, 6)))
    assert store.latest_scores(limit=10)[1] == 0
