"""File downloads the service answers with: a CSV export, streamed as it is written."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from fastapi.responses import StreamingResponse

from churnguard.store.export import csv_lines


def csv_download(rows: Iterable[list[str]], name: str) -> StreamingResponse:
    """A CSV attachment named ``churnguard-<name>-<today>.csv``, with the export's header."""
    filename = f"churnguard-{name}-{datetime.now(UTC).date().isoformat()}.csv"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(csv_lines(rows), media_type="text/csv; charset=utf-8", headers=headers)
