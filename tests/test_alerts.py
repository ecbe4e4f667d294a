"""Tests for alerts.py: digests per manager over a real local SMTP server (aiosmtpd) and a local
HTTP receiver for the signed webhook; hysteresis; nothing sent twice; the dry run."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller

from churnguard import cli
from churnguard.alerts import run_alerts, sign
from churnguard.config import Settings
from churnguard.store.followups import plan_follow_up
from churnguard.store.scores import ScoreRecord, ScoreStore, describe_change
from tests.factories import BACKENDS, open_store, score_record

SECRET = "hush"
TODAY = date(2025, 6, 10)
T0, T1 = datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)


class Inbox:
    """An aiosmtpd handler keeping every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[arg-type]
        )
        return "250 OK"


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def hook() -> Iterator[str]:
    Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def record(client_id: str, when: datetime, p: float, manager: str | None) -> ScoreRecord:
    """A score as alerts read it: with a name and one reason."""
    return score_record(
        client_id,
        when,
        p,
        manager,
        client_name=f"{client_id} & Co",
        drivers=[{"feature": "gap", "reason": "No contact for 74 days"}],
    )


def score(store: ScoreStore, when: datetime, book: dict[str, tuple[float, str | None]]) -> None:
    """Save one scoring run, with "what changed" as batch scoring works it out."""
    previous = store.previous_scores(when)
    store.save_scores(
        dataclasses.replace(record(c, when, p, m), change=describe_change(previous.get(c), p))
        for c, (p, m) in book.items()
    )


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScoreStore]:
    with open_store(request.param, tmp_path) as store:
        yield _history(store)


def _history(store: ScoreStore) -> ScoreStore:
    """Two scorings, and a follow-up overdue since yesterday."""
    score(store, T0, {"A": (0.2, "Ana"), "B": (0.05, "Ana"), "C": (0.02, None)})
    score(store, T1, {"A": (0.45, "Ana"), "B": (0.25, "Ana"), "C": (0.5, None)})
    call = store.log_action("B", "Call", "", TODAY - timedelta(days=5), "Ana")
    plan_follow_up(store, call.id, "B", "Send the proposal", TODAY - timedelta(days=1))
    return store


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    base = {
        "home": tmp_path,
        "dashboard_url": "https://cg.example.com/",
        "alert_recipients": {"Ana": "ana@example.com"},
        "alert_fallback_recipient": "team@example.com",
        "webhook_secret": SECRET,
        "smtp_starttls": False,
    }
    return Settings(**(base | values))


def test_each_manager_gets_one_digest_by_email_and_webhook_and_reruns_send_nothing(
    store: ScoreStore, smtp: tuple[Inbox, int], hook: str, tmp_path: Path
) -> None:
    inbox, port = smtp
    settings = settings_for(tmp_path, smtp_host="127.0.0.1", smtp_port=port, webhook_url=hook)
    run = run_alerts(store, settings, today=TODAY)
    assert [d.manager for d in run.digests] == ["Ana", None]
    assert {m["To"] for m in inbox.messages} == {"ana@example.com", "team@example.com"}
    ana = next(m for m in inbox.messages if m["To"] == "ana@example.com")
    text = ana.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Entered the high-risk band: A & Co at 45%, up 25 points" in text
    assert "Risk rising fast: B & Co at 25%, up 20 points" in text
    assert "Follow-up overdue since 09 Jun 2025: Send the proposal (B & Co)" in text
    assert "No account review on record: A & Co (high risk)" in text
    assert "No contact for 74 days" in text and "https://cg.example.com/clients/A" in text
    html = ana.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert 'href="https://cg.example.com/clients/A"' in html and "A &amp; Co" in html
    assert len(Hook.received) == 2
    for headers, body in Hook.received:
        expected = sign(SECRET, headers["X-Churnguard-Timestamp"], body)
        assert hmac.compare_digest(headers["X-Churnguard-Signature"], expected)
        assert "<https://cg.example.com/clients/" in json.loads(body)["text"]
    assert run.sent == {"email": 6, "webhook": 6}

    again = run_alerts(store, settings, today=TODAY)  # the same scores: nothing new
    assert again.sent == {} and again.skipped == {"email": 6, "webhook": 6}
    assert len(inbox.messages) == 2 and len(Hook.received) == 2
    assert run_alerts(store, settings, today=TODAY, dry_run=True).digests == []


def test_a_client_hovering_at_the_high_threshold_alerts_once(
    store: ScoreStore, hook: str, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, webhook_url=hook)
    run_alerts(store, settings, today=TODAY)
    high_alerts = []
    for month, p in ((7, 0.28), (8, 0.31), (9, 0.2), (10, 0.32)):  # hover, fall, come back
        Hook.received = []
        score(store, datetime(2025, month, 1, tzinfo=UTC), {"A": (p, "Ana")})
        run_alerts(store, settings, today=date(2025, month, 2))
        texts = [i["text"] for _, b in Hook.received for i in json.loads(b)["items"]]
        high_alerts.append(any(t.startswith("Entered the high-risk band: A") for t in texts))
    assert high_alerts == [False, False, False, True]


def test_a_failed_delivery_is_not_recorded_and_is_retried(
    store: ScoreStore, hook: str, tmp_path: Path
) -> None:
    down = settings_for(tmp_path, webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    with pytest.raises(OSError):
        run_alerts(store, down, today=TODAY)
    run = run_alerts(store, settings_for(tmp_path, webhook_url=hook), today=TODAY)
    assert run.sent == {"webhook": 6}


def test_the_dry_run_prints_the_digests_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _history(ScoreStore(f"sqlite:///{tmp_path / 'cli.db'}").create())
    monkeypatch.setenv("CHURNGUARD_DATABASE_URL", str(store.engine.url))
    monkeypatch.setenv("CHURNGUARD_HOME", str(tmp_path))
    monkeypatch.setenv("CHURNGUARD_ALERT_RECIPIENTS", '{"Ana": "ana@example.com"}')
    assert cli.main(["alerts", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "To: ana@example.com" in out and "Entered the high-risk band: A & Co" in out
    assert "nothing was sent" in out
    assert cli.main(["alerts"]) == 0
    assert "No alert channel is configured" in capsys.readouterr().out
