"""The host's middleware: static files without a thread hop, store-backed sessions whose
failures are JSON, and every error as JSON."""

from __future__ import annotations

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from whitenoise.middleware import WhiteNoiseMiddleware

from dziri.core.errors import DziriError

from .errors import Busy, error_response, response_for

log = logging.getLogger("dziri.django_host")


class HostCheckMiddleware(MiddlewareMixin):
    """Check the Host header against ALLOWED_HOSTS on every request (Django checks it only
    when something asks for the host): a page on another domain rebound to 127.0.0.1 gets
    a 400, not the API."""

    def process_request(self, request):
        request.get_host()  # raises DisallowedHost, answered by handler400


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """whitenoise's static file serving (caching headers, immutable hashed assets,
    compressed variants) as an async middleware. WhiteNoiseMiddleware itself is sync-only,
    which under ASGI would send every request, the reply streams included, through a
    thread and back."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        if not iscoroutinefunction(get_response):
            raise TypeError("StaticFilesMiddleware runs under ASGI only")
        markcoroutinefunction(self)

    async def __call__(self, request):
        static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(_serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)


def _serve(static_file, request) -> HttpResponse:
    # The site's files are small (a Vite bundle): read them whole rather than hand Django a
    # file iterator, which under ASGI it would consume in a thread with a warning each time.
    served = static_file.get_response(request.method, request.META)
    body = b""
    if served.file is not None:
        with served.file as file:
            body = file.read()
    response = HttpResponse(body, status=int(served.status))
    del response["Content-Type"]
    for key, value in served.headers:
        response[key] = value
    return response


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, with a store failure while saving the session answered as JSON 503."""

    def process_response(self, request, response):
        try:
            return super().process_response(request, response)
        except DziriError as exc:
            return response_for(exc)


class ErrorMiddleware(MiddlewareMixin):
    """Exceptions raised by views become `{"error": {"code", "message"}}`."""

    def process_exception(self, request, exc):
        if isinstance(exc, DziriError):
            if exc.http_status >= 500 and not isinstance(exc, Busy):  # a full queue is the design working
                log.warning("%s %s: %s", request.method, request.path, exc)
            return response_for(exc)
        if isinstance(exc, Http404):
            return error_response(404, "not_found", "not found")
        if isinstance(exc, PermissionDenied):
            return error_response(403, "forbidden", "forbidden")
        if isinstance(exc, SuspiciousOperation):
            return error_response(400, "invalid_input", "the request was refused")
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal_error", "the server hit an unexpected error")
