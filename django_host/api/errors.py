"""JSON answers for what Django handles itself: no matching URL, a refused request,
a CSRF failure and an uncaught error."""

from __future__ import annotations

from ..errors import error_response


def csrf_failure(request, reason: str = ""):
    detail = f" ({reason.rstrip('.')})" if reason else ""
    return error_response(
        403, "csrf_failed",
        f"CSRF check failed{detail}: send the csrftoken cookie's value in the X-CSRFToken header;"
        " GET /api/auth/csrf sets the cookie",
    )


def bad_request(request, exception=None):
    return error_response(400, "invalid_input", "the request was refused")


def forbidden(request, exception=None):
    return error_response(403, "forbidden", "forbidden")


def not_found(request, exception=None):
    return error_response(404, "not_found", f"nothing at {request.path}")


def server_error(request):
    return error_response(500, "internal_error", "the server hit an unexpected error")
