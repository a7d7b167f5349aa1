"""The OpenAPI document as the API behaves: the bearer scheme, and every error status in our
one error shape (FastAPI documents 422 in its own shape, and no auth or size errors)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.errors import DESCRIPTIONS, ErrorBody

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")

# What each operation answers besides its success and what its declaration implies (a key:
# 401, 403; a body: 400, 413, 422; parameters: 422), in the error shape. The schemathesis test
# (tests/test_openapi.py) fails on a status the app answers with that is missing here.
ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("put", "/v1/sequences/{key}"): (409,),
    ("get", "/v1/sequences/{key}"): (404,),
    ("get", "/v1/contacts/{email}"): (404,),
    ("post", "/v1/enrollments"): (404, 409),
    ("post", "/v1/enrollments/bulk"): (404,),
    ("get", "/v1/enrollments/{enrollment_id}"): (404,),
    ("post", "/v1/enrollments/{enrollment_id}/cancel"): (404, 409),
    ("get", "/v1/drafts"): (422,),
    ("get", "/v1/drafts/{draft_id}"): (404,),
    ("post", "/v1/drafts/{draft_id}/approve"): (404, 409),
    ("post", "/v1/drafts/{draft_id}/reject"): (404, 409),
    ("post", "/v1/webhooks/{provider}"): (400, 401, 403, 404, 413, 422, 503),
}
# A second success, or a failure in the success's own shape.
ALSO: dict[tuple[str, str], tuple[int, str]] = {
    ("put", "/v1/sequences/{key}"): (200, "Unchanged: the current version"),
    ("post", "/v1/enrollments"): (200, "The same Idempotency-Key again: the same enrollment"),
    ("get", "/healthz"): (503, "The database or Redis is unreachable"),
}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that completes FastAPI's document, once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Errors every operation can answer with, from what it declares: a key (401, 403), a body
    (400, 413, 422), parameters (422)."""
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            _add_also(operation, ALSO.get((method, path)))
            _add_errors(operation, ERRORS.get((method, path), ()))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_ONLY:
        schemas.pop(name, None)
    model = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(model.pop("$defs", {}))
    schemas["ErrorBody"] = model
    return document


def _add_also(operation: dict[str, Any], also: tuple[int, str] | None) -> None:
    if also is None:
        return
    responses: dict[str, Any] = operation["responses"]
    success = next(r for code, r in sorted(responses.items()) if code.startswith("2"))
    responses[str(also[0])] = {**success, "description": also[1]}


def _add_errors(operation: dict[str, Any], declared: tuple[int, ...]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses: list[int] = list(declared)
    if operation.get("security"):
        statuses += [401, 403]
    if "requestBody" in operation:
        statuses += [400, 413, 422]  # 400: not decodable as its content type says
    if operation.get("parameters"):
        statuses.append(422)
    for code in statuses:
        responses.setdefault(str(code), {"description": DESCRIPTIONS[code]})
    if "422" in responses:
        responses["422"]["description"] = DESCRIPTIONS[422]
    for status, response in responses.items():
        if (status[0] in "45" and "content" not in response) or _is_fastapi_422(response):
            response["content"] = {"application/json": {"schema": _ERROR_REF}}


def _is_fastapi_422(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
