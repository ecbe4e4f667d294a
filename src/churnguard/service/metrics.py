"""Prometheus metrics of the service: requests, latency, scores by band, the model served.

Each app has its own registry (no global state), rendered in Prometheus' text format at
``/metrics``. Requests are counted by route template (``/api/v1/clients/{client_id}``), never by
raw path, so that the number of series stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from churnguard.service.writer import ScoreWriter

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_UNMATCHED = "other"  # a path no route matched, or a request refused before routing


class ServiceMetrics:
    """The service's metrics in one registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "churnguard_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "churnguard_http_request_duration_seconds",
            "Time from receiving a request to sending the end of its response.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scores = Counter(
            "churnguard_scores",
            "Client scores returned by POST /api/v1/score, by risk band.",
            ["band"],
            registry=self.registry,
        )
        self.model = Gauge(
            "churnguard_model_info",
            "The model being served (value 1), by registered version and kind.",
            ["version", "kind", "source"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "churnguard_model_loaded",
            "1 when a model is loaded and the service can score, else 0.",
            registry=self.registry,
        )
        self.writes_pending = Gauge(
            "churnguard_score_writes_pending",
            "Scores answered and not yet written to the score store.",
            registry=self.registry,
        )
        self.write_failures = Gauge(
            "churnguard_score_write_failures",
            "Scores answered that could not be written to the score store (see the log).",
            registry=self.registry,
        )

    def count_scores(self, bands: Iterable[str]) -> None:
        for band in bands:
            self.scores.labels(band).inc()

    def set_model(self, version: str | None, kind: str = "", source: str = "") -> None:
        """Record the model now served (None: no model)."""
        self.model.clear()
        if version is not None:
            self.model.labels(version, kind, source).set(1)
        self.model_loaded.set(0 if version is None else 1)

    def watch_writer(self, writer: ScoreWriter) -> None:
        """Report the writer's backlog and failures at each scrape."""
        self.writes_pending.set_function(lambda: writer.pending)
        self.write_failures.set_function(lambda: writer.failed)

    def render(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request into ``ServiceMetrics``."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or _UNMATCHED
            method = scope["method"]
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - start)
