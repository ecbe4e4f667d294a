"""Rendering the dashboard's Jinja2 templates: autoescaped, with strict security headers."""

from __future__ import annotations

import functools
import math
from datetime import date, datetime
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from churnguard.service.web.charts import money, percent

_NONE = "\N{EN DASH}"  # shown for a missing value
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}

# Pages load nothing but their own stylesheet: no inline script or style, no other origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment: every ``{{ value }}`` is HTML-escaped unless marked safe."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("churnguard.service.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=_money, pct=percent, rate=_rate, day=_day, signed_points=_signed_points
    )
    return env


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A page from a template; ``viewer`` is None on pages seen before signing in."""
    context = {
        "request": request,
        "viewer": None,
        "currency": _currency(request),
        "horizon_days": _horizon_days(request),
        **context,
    }
    html = environment().get_template(template).render(context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def currency_prefix(code: str) -> str:
    """What goes before an amount: "$" for USD, "€" for EUR, else the code and a space."""
    return CURRENCY_SYMBOLS.get(code.upper(), f"{code.upper()} ")


def _horizon_days(request: Request) -> int | None:
    """The days a churn probability looks ahead: the served model's horizon, else the setting's."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        return None
    scorer = service.scorer
    return scorer.model.horizon_days if scorer is not None else service.settings.horizon_days


def _currency(request: Request) -> str:
    """The service's currency code (USD when the app carries no settings, as in tests of parts)."""
    service = getattr(request.app.state, "service", None)
    return service.settings.currency if service is not None else "USD"


@jinja2.pass_context
def _money(context: jinja2.runtime.Context, value: float | None, short: bool = False) -> str:
    """An amount with the currency: $1,200 (or $1.2k when short)."""
    if value is None:
        return _NONE
    sign, size = ("-" if value < 0 else ""), abs(value)
    prefix = currency_prefix(context.get("currency", "USD"))
    return f"{sign}{prefix}{money(size) if short else f'{size:,.0f}'}"


def _rate(value: float) -> str:
    """A percentage already times 100 (portfolio rates); none when undefined (NaN)."""
    return f"{value:.1f}%" if math.isfinite(value) else _NONE


def _day(value: date | datetime | None, fmt: str = "%d %b %Y") -> str:
    return _NONE if value is None else value.strftime(fmt)


def _signed_points(delta: float | None) -> str:
    """A change in probability as percentage points: +12 pts, -3 pts."""
    return "" if delta is None else f"{delta * 100:+.0f} pts"
