"""The host's own errors (on top of dziri.core.errors) and their JSON form:
`{"error": {"code", "message"}}` with the exception's `http_status`."""

from __future__ import annotations

import math

from django.http import JsonResponse

from dziri.core.errors import DziriError

DEFAULT_RETRY_AFTER_S = 5  # for a 503 that knows no better (backend or store unreachable)


class NotAuthenticated(DziriError):
    code = "not_authenticated"
    http_status = 401


class InvalidCredentials(DziriError):
    code = "invalid_credentials"
    http_status = 401


class CsrfFailed(DziriError):
    code = "csrf_failed"
    http_status = 403


class MethodNotAllowed(DziriError):
    code = "method_not_allowed"
    http_status = 405


class _RetryLater(DziriError):
    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooManyAttempts(_RetryLater):
    """Too many failed logins for this username from this address."""

    code = "too_many_attempts"
    http_status = 429


class Busy(_RetryLater):
    """The model's queue is full."""

    code = "busy"
    http_status = 503


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, retry_after_s: float | None = None) -> JsonResponse:
    return with_retry_after(JsonResponse(error_body(code, message), status=status), retry_after_s)


def with_retry_after(response, retry_after_s: float | None):
    """Retry-After on a response that asks the client to come back: the error's own delay,
    else DEFAULT_RETRY_AFTER_S for a 503 (the OpenAI API's answers use this too)."""
    if retry_after_s is None and response.status_code == 503:
        retry_after_s = DEFAULT_RETRY_AFTER_S
    if retry_after_s is not None:
        response["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return response


def response_for(exc: DziriError) -> JsonResponse:
    return error_response(exc.http_status, exc.code, str(exc) or exc.code, getattr(exc, "retry_after_s", None))
