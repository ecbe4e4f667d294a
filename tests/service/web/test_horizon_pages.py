"""The client page shows the risk over several horizons and the renewal chance; the list, the
renewal chance beside the renewal date. Set-up shared with test_pages (its fixtures, own store)."""

# ruff: noqa: F811 (the fixtures imported from test_pages are this module's arguments)

from __future__ import annotations

import dataclasses

from fastapi.testclient import TestClient

from churnguard.config import Settings
from churnguard.store.scores import ScoreRecord, ScoreStore
from tests.service.web.test_pages import (  # noqa: F401 (fixtures)
    api_keys,
    app_client,
    as_of,
    book,
    scored,
    settings,
    sign_in,
)

CURVE = {
    "horizons": [
        {"days": 30, "probability": 0.05},
        {"days": 90, "probability": 0.2},
        {"days": 180, "probability": 0.41},
    ],
    "renewal": {"date": "2025-09-01", "probability": 0.33},
}


def test_the_client_page_and_the_list_show_the_risk_ahead_and_at_the_renewal(
    app_client: TestClient, api_keys: dict, settings: Settings, scored: dict[str, ScoreRecord]
) -> None:
    with ScoreStore(settings.score_store_url) as store:
        store.save_scores([dataclasses.replace(scored["X-EVIL"], curve=CURVE)])
    sign_in(app_client, api_keys["a"])
    page = app_client.get("/clients/X-EVIL").text
    assert 'data-testid="horizons"' in page
    assert all(f"{d} days</th>" in page for d in (30, 90, 180))
    assert "5.0%" in page and "20%" in page and "41%" in page
    assert "33% chance of having left by 2025-09-01" in page
    listing = app_client.get("/clients?q=evil").text
    assert "33% chance of leaving by then" in listing


def test_a_score_without_a_curve_shows_no_risk_ahead(
    app_client: TestClient, api_keys: dict, scored: dict[str, ScoreRecord]
) -> None:
    sign_in(app_client, api_keys["b"])
    other = next(
        c for c, r in scored.items() if r.account_manager != scored["X-EVIL"].account_manager
    )
    page = app_client.get(f"/clients/{other}").text
    assert 'data-testid="horizons"' not in page and "renewal-chance" not in page
