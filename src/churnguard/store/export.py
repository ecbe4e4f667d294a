"""The clients' latest scores as CSV: one column list for the dashboard, the API and the CLI.

``export_rows`` walks a filtered list (``ScoreStore.latest_scores``'s filters and order) page by
page, so a book of any size streams in bounded memory; ``csv_lines`` turns rows into CSV text.
Text a spreadsheet would run as a formula (a cell starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return) is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import Any

from sqlalchemy.sql.elements import ColumnElement

from churnguard.store.attention import last_actions
from churnguard.store.scores import MAX_PAGE, Score, ScoreStore

COLUMNS = (
    "client_id",
    "client_name",
    "account_manager",
    "segment",
    "band",
    "probability",
    "revenue_at_risk",
    "monthly_value",
    "change",
    "change_points",
    "top_reason",
    "recommended_action",
    "last_action",
    "last_action_on",
    "as_of",
    "model_version",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_rows(
    store: ScoreStore,
    *,
    manager: str | None = None,
    band: str | None = None,
    search: str | None = None,
    order_by: str = "revenue_at_risk",
    ascending: bool | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> Iterator[list[str]]:
    """Every client of the filtered list, in order, as CSV cells (``COLUMNS``), page by page."""
    offset = 0
    while True:
        page, _ = store.latest_scores(
            manager=manager,
            band=band,
            search=search,
            order_by=order_by,
            ascending=ascending,
            limit=MAX_PAGE,
            offset=offset,
            where=where,
        )
        last = last_actions(store, [s.client_id for s in page])
        yield from (score_row(s, last.get(s.client_id)) for s in page)
        if len(page) < MAX_PAGE:
            return
        offset += len(page)


def score_row(score: Score, last_action: tuple[str, date] | None = None) -> list[str]:
    """One client's cells, in ``COLUMNS`` order."""
    delta = score.change.get("delta")
    text: dict[str, Any] = {  # from the CRM or the model: defused
        "client_id": score.client_id,
        "client_name": score.client_name,
        "account_manager": score.account_manager,
        "segment": score.segment,
        "band": score.band,
        "change": score.change.get("direction", "new"),
        "top_reason": score.drivers[0].get("reason") if score.drivers else None,
        "recommended_action": score.actions[0].get("action") if score.actions else None,
        "last_action": last_action[0] if last_action else None,
        "model_version": score.model_version,
    }
    cells = {name: _cell(value) for name, value in text.items()}
    cells |= {  # numbers and dates, written by us
        "probability": f"{score.probability:.4f}",
        "revenue_at_risk": f"{score.revenue_at_risk:.2f}",
        "monthly_value": f"{score.monthly_value:.2f}",
        "change_points": "" if delta is None else f"{float(delta) * 100:+.1f}",
        "last_action_on": last_action[1].isoformat() if last_action else "",
        "as_of": score.as_of.date().isoformat(),
    }
    return [cells[name] for name in COLUMNS]


def csv_lines(rows: Iterable[list[str]]) -> Iterator[str]:
    """CSV text, the header then one line per row (RFC 4180: CRLF, quotes where needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in itertools.chain([list(COLUMNS)], rows):
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _cell(value: Any) -> str:
    """A cell's text; none is empty; text that a spreadsheet would run is defused."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
