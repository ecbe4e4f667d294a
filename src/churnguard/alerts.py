"""Alerts after a scoring run: one digest per account manager, by email and/or a signed webhook.

A digest lists the manager's clients that entered the high band or rose by more than
``settings.alert_rise`` since their last score, each with its top reasons and a link to its page,
then the follow-ups due or overdue and the clients with no account review for
``settings.alert_review_days``. Unassigned clients go to ``settings.alert_fallback_recipient``.

- **Hysteresis.** After a high-risk alert a client alerts again only once one of its scores fell
  below the high threshold minus ``settings.alert_hysteresis``: a client hovering at the boundary
  does not alert every run.
- **No duplicates.** Every item delivered is recorded per channel (``store.alerts``) under a key
  naming what it is about; a re-run sends only what was not sent yet on that channel. An item is
  recorded only once its channel accepted it, so a failed delivery is retried by the next run.
- **Webhook.** A POST of the digest as JSON, with Slack-compatible ``text``, signed with
  HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``settings.webhook_secret``: headers
  ``X-Churnguard-Timestamp`` and ``X-Churnguard-Signature: sha256=<hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from html import escape
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from churnguard.config import Settings
from churnguard.store.alerts import (
    SentAlert,
    already_sent,
    last_alerted,
    lowest_since,
    record_sent,
)
from churnguard.store.followups import FollowUp, due_follow_ups
from churnguard.store.schema import actions, scores
from churnguard.store.scores import MAX_PAGE, Score, ScoreStore

KINDS = {"high": "Entered the high-risk band", "rising": "Risk rising fast"}
WEBHOOK_TIMEOUT = 10.0  # seconds
REVIEW_WORDS = ("review", "meeting", "qbr")  # a logged action of such a type is a review


@dataclass(frozen=True)
class AlertItem:
    """One line of a digest: what happened to which client, and where to look."""

    kind: str  # high, rising, follow-up, review
    client_id: str
    client_name: str
    manager: str | None
    text: str
    link: str
    dedupe_key: str
    as_of: datetime | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Digest:
    """A manager's alerts of one run (``manager`` None: the unassigned clients)."""

    manager: str | None
    recipient: str | None
    items: list[AlertItem]
    dashboard_url: str

    @property
    def subject(self) -> str:
        risk = sum(i.kind in KINDS for i in self.items)
        todo = len(self.items) - risk
        return f"churnguard: {_count(risk, 'client')} at risk, {_count(todo, 'reminder')}"

    @property
    def greeting(self) -> str:
        return f"For {self.manager}" if self.manager else "Unassigned clients"


@dataclass
class AlertRun:
    """What a run found and sent."""

    digests: list[Digest]
    sent: dict[str, int] = field(default_factory=dict)  # channel -> items delivered
    skipped: dict[str, int] = field(default_factory=dict)  # channel -> already sent before


# --- what to alert about ----------------------------------------------------------------------


def collect_alerts(store: ScoreStore, settings: Settings, today: date) -> list[AlertItem]:
    """Every alert item the latest scores and follow-ups call for, before de-duplication."""
    items = _risk_alerts(store, settings)
    items += _follow_up_alerts(store, settings, today)
    items += _review_alerts(store, settings, today)
    return items


def _risk_alerts(store: ScoreStore, settings: Settings) -> list[AlertItem]:
    """Clients that entered the high band (with hysteresis) or rose more than the threshold."""
    previous_band = sa.func.coalesce(scores.c.change["previous_band"].as_string(), "")
    delta = scores.c.change["delta"].as_float()
    entered = sa.and_(scores.c.band == "high", previous_band != "high")
    rose = sa.and_(
        scores.c.change["direction"].as_string() == "rising", delta > settings.alert_rise
    )
    found = _all_latest(store, [sa.or_(entered, rose)])
    high = [s for s in found if s.band == "high" and s.change.get("previous_band") != "high"]
    rearmed = _rearmed(store, high, settings.risk_bands[1] - settings.alert_hysteresis)
    items = []
    for s in found:
        if s.client_id in rearmed:
            items.append(_score_item(s, "high", settings))
        elif float(s.change.get("delta") or 0) > settings.alert_rise:
            items.append(_score_item(s, "rising", settings))
    return items


def _all_latest(store: ScoreStore, where: list[Any]) -> list[Score]:
    """Every latest score matching ``where``, highest revenue at risk first."""
    found: list[Score] = []
    while True:
        page, _ = store.latest_scores(limit=MAX_PAGE, offset=len(found), where=where)
        found += page
        if len(page) < MAX_PAGE:
            return found


def _rearmed(store: ScoreStore, high: list[Score], rearm_below: float) -> set[str]:
    """The newly high clients that may alert: never alerted as high, or fallen below
    ``rearm_below`` since their last high alert."""
    last = last_alerted(store, [s.client_id for s in high], "high")
    ready = set()
    for s in high:
        before = last.get(s.client_id)
        if before is None or before >= s.as_of:  # first time, or this very score (re-run)
            ready.add(s.client_id)
            continue
        lowest = lowest_since(store, s.client_id, before, s.as_of)
        if lowest is not None and lowest < rearm_below:
            ready.add(s.client_id)
    return ready


def _score_item(score: Score, kind: str, settings: Settings) -> AlertItem:
    delta = score.change.get("delta")
    moved = f", up {float(delta) * 100:.0f} points" if delta is not None else ""
    name = score.client_name or score.client_id
    return AlertItem(
        kind=kind,
        client_id=score.client_id,
        client_name=name,
        manager=score.account_manager or None,
        text=f"{KINDS[kind]}: {name} at {score.probability:.0%}{moved}",
        link=_client_link(settings, score.client_id),
        dedupe_key=f"{kind}:{score.client_id}:{score.as_of:%Y-%m-%d}",
        as_of=score.as_of,
        reasons=tuple(str(d["reason"]) for d in score.drivers[:3] if d.get("reason")),
    )


def _follow_up_alerts(store: ScoreStore, settings: Settings, today: date) -> list[AlertItem]:
    """Next steps due today or overdue, for the client's current manager."""
    due = due_follow_ups(store, today)
    owners = _owners(store, [f.client_id for f in due])
    return [_follow_up_item(f, owners.get(f.client_id), settings, today) for f in due]


def _follow_up_item(f: FollowUp, score: Score | None, settings: Settings, today: date) -> AlertItem:
    state = f.state(today)
    name = (score.client_name if score else None) or f.client_id
    when = "overdue since" if state == "overdue" else "due"
    return AlertItem(
        kind="follow-up",
        client_id=f.client_id,
        client_name=name,
        manager=score.account_manager if score else None,
        text=f"Follow-up {when} {f.due_on:%d %b %Y}: {f.next_step} ({name})",
        link=_client_link(settings, f.client_id),
        dedupe_key=f"follow-up:{f.client_id}:{f.last_action_on}:{f.due_on}:{state}",
    )


def _review_alerts(store: ScoreStore, settings: Settings, today: date) -> list[AlertItem]:
    """High-risk clients with no account review logged for ``alert_review_days``."""
    high = _all_latest(store, [scores.c.band == "high"])
    reviews = _last_reviews(store, [s.client_id for s in high])
    cutoff = today - timedelta(days=settings.alert_review_days)
    items = []
    for s in high:
        last = reviews.get(s.client_id)
        if last is not None and last >= cutoff:
            continue
        name = s.client_name or s.client_id
        since = f"since {last:%d %b %Y}" if last else "on record"
        items.append(
            AlertItem(
                kind="review",
                client_id=s.client_id,
                client_name=name,
                manager=s.account_manager or None,
                text=f"No account review {since}: {name} (high risk)",
                link=_client_link(settings, s.client_id),
                dedupe_key=f"review:{s.client_id}:{last or 'never'}:{today:%Y-%m}",
            )
        )
    return items


def _last_reviews(store: ScoreStore, client_ids: Sequence[str]) -> dict[str, date]:
    """The day of each client's last logged review or meeting."""
    words = [sa.func.lower(actions.c.action_type).contains(w) for w in REVIEW_WORDS]
    query = (
        sa.select(actions.c.client_id, sa.func.max(actions.c.happened_on))
        .where(actions.c.client_id.in_(list(client_ids)), sa.or_(*words))
        .group_by(actions.c.client_id)
    )
    with store.engine.connect() as conn:
        return {c: d for c, d in conn.execute(query)}


def _owners(store: ScoreStore, client_ids: Iterable[str]) -> dict[str, Score]:
    """Each client's latest score (its current manager and name)."""
    found = {}
    for client_id in dict.fromkeys(client_ids):
        score = store.latest_score(client_id)
        if score is not None:
            found[client_id] = score
    return found


def _client_link(settings: Settings, client_id: str) -> str:
    return f"{settings.dashboard_url.rstrip('/')}/clients/{quote(client_id, safe='')}"


# --- digests --------------------------------------------------------------------------------------


def build_digests(items: list[AlertItem], settings: Settings) -> list[Digest]:
    """One digest per manager (unassigned last), risk alerts first, each client once a kind."""
    by_manager: dict[str | None, list[AlertItem]] = {}
    for item in items:
        by_manager.setdefault(item.manager, []).append(item)
    order = sorted(by_manager, key=lambda m: (m is None, (m or "").casefold()))
    return [
        Digest(
            manager=m,
            recipient=_recipient(m, settings),
            items=sorted(by_manager[m], key=lambda i: list(_KIND_ORDER).index(i.kind)),
            dashboard_url=settings.dashboard_url.rstrip("/"),
        )
        for m in order
    ]


_KIND_ORDER = ("high", "rising", "follow-up", "review")


def _recipient(manager: str | None, settings: Settings) -> str | None:
    if manager is not None and manager in settings.alert_recipients:
        return settings.alert_recipients[manager]
    return settings.alert_fallback_recipient


def digest_text(digest: Digest) -> str:
    """The digest as plain text (the email's text part, the dry run's output)."""
    lines = [f"{digest.greeting}: {digest.subject.removeprefix('churnguard: ')}", ""]
    for item in digest.items:
        lines.append(f"- {item.text}")
        lines += [f"    {reason}" for reason in item.reasons]
        lines.append(f"    {item.link}")
    lines += ["", f"Everything that needs attention: {digest.dashboard_url}/clients?attention=all"]
    return "\n".join(lines) + "\n"


def digest_html(digest: Digest) -> str:
    """The digest as a small HTML email (inline styles only: mail clients drop the rest)."""
    rows = "".join(
        f'<tr><td style="padding:8px 0;border-bottom:1px solid #dde2ea">'
        f'<a href="{escape(i.link)}" style="color:#1d5fa8;font-weight:600">{escape(i.text)}</a>'
        + "".join(f'<div style="color:#5d6778;font-size:13px">{escape(r)}</div>' for r in i.reasons)
        + "</td></tr>"
        for i in digest.items
    )
    everything = f"{digest.dashboard_url}/clients?attention=all"
    return (
        '<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#1d2430">'
        f'<h2 style="color:#1f4e79">{escape(digest.greeting)}</h2>'
        f"<p>{escape(digest.subject.removeprefix('churnguard: '))}</p>"
        f'<table style="border-collapse:collapse;width:100%;max-width:640px">{rows}</table>'
        f'<p><a href="{escape(everything)}">Everything that needs attention</a></p>'
        "</body></html>"
    )


def slack_text(digest: Digest) -> str:
    """The digest in Slack's mrkdwn: one line per item, linked."""
    lines = [f"*{_slack(digest.greeting)}*: {_slack(digest.subject.removeprefix('churnguard: '))}"]
    for i in digest.items:
        reasons = f" ({_slack('; '.join(i.reasons))})" if i.reasons else ""
        lines.append(f"• <{i.link}|{_slack(i.text)}>{reasons}")
    return "\n".join(lines)


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# --- delivery ------------------------------------------------------------------------------------


def send_email(digest: Digest, settings: Settings) -> None:
    """Send a digest to its recipient over SMTP."""
    assert settings.smtp_host and digest.recipient
    message = EmailMessage()
    message["Subject"] = digest.subject
    message["From"] = settings.smtp_from
    message["To"] = digest.recipient
    message.set_content(digest_text(digest))
    message.add_alternative(digest_html(digest), subtype="html")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(message)


def webhook_body(digest: Digest) -> bytes:
    """The webhook's JSON: Slack-compatible ``text`` plus the items as data."""
    payload = {
        "text": slack_text(digest),
        "manager": digest.manager,
        "items": [
            {
                "kind": i.kind,
                "client_id": i.client_id,
                "client_name": i.client_name,
                "text": i.text,
                "reasons": list(i.reasons),
                "link": i.link,
            }
            for i in digest.items
        ],
    }
    return json.dumps(payload, ensure_ascii=False).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def send_webhook(digest: Digest, settings: Settings) -> None:
    """POST a digest to the webhook; anything but a 2xx answer is an error."""
    assert settings.webhook_url
    if not settings.webhook_url.startswith(("https://", "http://")):
        raise ValueError(f"the webhook URL must be http(s), not {settings.webhook_url!r}")
    body = webhook_body(digest)
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Churnguard-Timestamp": timestamp}
    if settings.webhook_secret:
        headers["X-Churnguard-Signature"] = sign(settings.webhook_secret, timestamp, body)
    request = urllib.request.Request(settings.webhook_url, body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as answer:
        if not 200 <= answer.status < 300:
            raise OSError(f"the webhook answered {answer.status}")


def channels(settings: Settings) -> list[str]:
    """The delivery channels configured: "email" (SMTP), "webhook"."""
    return [c for c, on in (("email", settings.smtp_host), ("webhook", settings.webhook_url)) if on]


# --- a run ---------------------------------------------------------------------------------------


def run_alerts(
    store: ScoreStore, settings: Settings, *, today: date, dry_run: bool = False
) -> AlertRun:
    """Collect, de-duplicate, send and record this run's alerts.

    ``dry_run`` sends and records nothing: its digests hold what a real run would send (on any
    configured channel; everything when none is configured).
    """
    digests = build_digests(collect_alerts(store, settings, today), settings)
    if dry_run:
        return AlertRun([d for d in (_unsent(store, d, settings) for d in digests) if d.items])
    run = AlertRun(digests)
    for channel in channels(settings):
        for digest in digests:
            _deliver(store, settings, channel, digest, run)
    return run


def _unsent(store: ScoreStore, digest: Digest, settings: Settings) -> Digest:
    """The digest without the items every configured channel has already delivered."""
    keys = [i.dedupe_key for i in digest.items]
    done = [already_sent(store, keys, c) for c in channels(settings)]
    everywhere = set.intersection(*done) if done else set()
    return replace(digest, items=[i for i in digest.items if i.dedupe_key not in everywhere])


def _deliver(
    store: ScoreStore, settings: Settings, channel: str, digest: Digest, run: AlertRun
) -> None:
    """Send a digest's items not sent on ``channel`` before, then record them."""
    if channel == "email" and digest.recipient is None:
        return  # nobody to mail this manager's digest to
    done = already_sent(store, [i.dedupe_key for i in digest.items], channel)
    fresh = replace(digest, items=[i for i in digest.items if i.dedupe_key not in done])
    run.skipped[channel] = run.skipped.get(channel, 0) + len(digest.items) - len(fresh.items)
    if not fresh.items:
        return
    (send_email if channel == "email" else send_webhook)(fresh, settings)
    recipient = (digest.recipient if channel == "email" else settings.webhook_url) or ""
    sent = [_sent(i, channel, recipient) for i in fresh.items]
    run.sent[channel] = run.sent.get(channel, 0) + record_sent(store, sent)


def _sent(item: AlertItem, channel: str, recipient: str) -> SentAlert:
    return SentAlert(
        dedupe_key=item.dedupe_key,
        channel=channel,
        kind=item.kind,
        client_id=item.client_id,
        account_manager=item.manager,
        recipient=recipient,
        as_of=item.as_of,
    )
