"""Request limits as pure ASGI middleware: refused before any body is parsed or work is queued.

``BodySizeLimit`` answers 413 to a body over the limit; ``InFlightLimit`` answers 503 with
``Retry-After`` to a scoring request past the bound on scoring work in flight.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodySizeLimit:
    """Answer 413 to a body larger than ``max_bytes``, by its Content-Length or as it streams in.

    The body is read here in full (up to the limit) and handed on in one piece: the app would
    buffer it anyway, and a request that lies about its length or streams without one is cut
    off at the limit instead of after it has been parsed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        body = await self._read(receive)
        if body is None:
            await self._refuse(send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it grows past the limit (or the client disconnects)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send: Send) -> None:
        detail = (
            f"request body too large: the limit is {self.max_bytes:,} bytes; "
            "send fewer clients per request"
        )
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then waits on the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class InFlightLimit:
    """Answer 503 with ``Retry-After`` at once to a request past ``most`` in flight on ``routes``.

    ``routes`` are (method, path) pairs (the scoring endpoint); other requests, health checks
    included, pass untouched. A refused request is answered before its body is read, so
    shedding costs next to nothing however many requests arrive.
    """

    def __init__(
        self, app: ASGIApp, most: int, routes: Collection[tuple[str, str]], retry_after: int = 1
    ) -> None:
        self.app = app
        self.most = most
        self.routes = frozenset(routes)
        self.retry_after = retry_after
        self.in_flight = 0  # changed on the event loop only: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) not in self.routes:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.most:
            await self._refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        detail = (
            f"overloaded: {self.most} scoring requests are in progress; "
            f"retry after {self.retry_after} s"
        )
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.retry_after).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
