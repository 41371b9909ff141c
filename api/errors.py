"""HTTP errors: every error answer is ``{"error": {"code": "snake_case", "message": "..."}}``."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from tasks.errors import AccessDenied, BadRequest, Conflict, Forbidden, NotFound, RecplayError, Unprocessable

#: The answer of each group of domain errors a request can cause (tasks/errors.py).
STATUS_OF = {BadRequest: 400, AccessDenied: 401, Forbidden: 403, NotFound: 404, Conflict: 409, Unprocessable: 422}


class ApiError(Exception):
    """Raised by a view to answer with an error status and code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _snake(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").split())


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    def _domain(exc: RecplayError) -> Response:
        status = next(code for group, code in STATUS_OF.items() if isinstance(exc, group))
        headers = {"WWW-Authenticate": 'Bearer realm="recplay"'} if status == 401 else None
        return error_response(status, exc.code, str(exc), headers)

    for group in STATUS_OF:
        app.register_error_handler(group, _domain)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        code = exc.code or 500
        name = {413: "payload_too_large", 404: "not_found", 405: "method_not_allowed"}.get(
            code, _snake(exc.name or "error")
        )
        response = error_response(code, name, exc.description or exc.name or "error")
        if code == 405 and isinstance(exc.get_response(), Response):
            allow = exc.get_response().headers.get("Allow")
            if allow:
                response.headers["Allow"] = allow
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")
