"""The OpenAPI document lists every status the API can answer, not only those routes declare.

Some answers come from outside a route's own code: the API key check (401, and 403 where a role
is required), the body size limit (413), the body parser (422), the bound on scoring work and
an unavailable store or model (503). ``document_statuses`` adds them to each operation they
apply to, found from the route's dependencies and method, so the document follows the code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from churnguard.service.deps import get_principal

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_ERROR = "#/components/schemas/ErrorPublic"
_VALIDATION_ERROR = "#/components/schemas/ValidationErrorPublic"
_UNAUTHORIZED = "No API key, or not a valid one."
_FORBIDDEN = "The key's role may not do this."
_STORE_DOWN = "The score store is unavailable: retry after Retry-After."
_TOO_LARGE = "The body is over the size limit."
_INVALID = "The body is not valid JSON, or not a valid request."
_OVERLOADED = "Overloaded: too many requests in progress; retry after Retry-After."

Rule = tuple[int, str, str]  # status, description, schema reference


def document_statuses(
    app: FastAPI, routers: Iterable[APIRouter], shed: Collection[tuple[str, str]]
) -> None:
    """Make ``app.openapi()`` list the statuses each operation of ``routers`` can answer.

    Args:
        app: the application.
        routers: the routers included in it (without a further prefix).
        shed: (method, path) of the operations answered 503 past the bound on work in flight.
    """
    build = app.openapi
    operations = [
        (route, method)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in sorted(route.methods or ())
    ]

    def openapi() -> dict[str, Any]:
        schema = build()  # built once and kept by FastAPI; adding a status twice changes nothing
        for route, method in operations:
            operation = schema["paths"][route.path_format][method.lower()]
            for status, description, ref in _statuses(route, method, shed):
                _add(operation["responses"], status, description, ref)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _statuses(route: APIRoute, method: str, shed: Collection[tuple[str, str]]) -> list[Rule]:
    """The statuses this operation can answer that it may not declare itself."""
    calls = set(_calls(route.dependant))
    rules: list[Rule] = []
    if get_principal in calls:
        rules += [(401, _UNAUTHORIZED, _ERROR), (503, _STORE_DOWN, _ERROR)]
    if any(_is_role_check(call) for call in calls):
        rules.append((403, _FORBIDDEN, _ERROR))
    if method in _WITH_BODY:
        rules.append((413, _TOO_LARGE, _ERROR))
    if route.dependant.body_params:
        rules.append(
            (422, "The body is not valid JSON, or not a valid request.", _VALIDATION_ERROR)
        )
    if (method, route.path_format) in shed:
        rules.append(
            (503, "Overloaded: too many requests in progress; retry after Retry-After.", _ERROR)
        )
    return rules


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every callable in a route's dependency tree."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _is_role_check(call: Callable[..., Any]) -> bool:
    return getattr(call, "__qualname__", "").startswith("require_role.")


def _add(responses: dict[str, Any], status: int, description: str, ref: str) -> None:
    """Declare a status; a 503 already declared gets this cause added to its description."""
    declared = responses.get(str(status))
    if declared is None:
        content = {"application/json": {"schema": {"$ref": ref}}}
        responses[str(status)] = {"description": description, "content": content}
    elif status == 503 and description not in declared.get("description", ""):
        declared["description"] = f"{declared.get('description', '')} {description}".strip()
