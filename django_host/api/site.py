"""The single-page site: index.html for "/" and every other non-API path (the React app
routes on the client); its assets are served under /static/ by the StaticFilesMiddleware."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import HttpResponse

from ..errors import MethodNotAllowed, response_for

# Vite's production build loads only its own files: no inline or third-party scripts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dziri</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem">
<h1>dziri is running</h1>
<p>The API answers under <code>/api/</code> (see <code>docs/api.md</code>; try
<a href="/api/health">/api/health</a>), but the chat site has not been built yet.</p>
<p>Run <code>make run</code> from the repository, which builds the frontend into
<code>django_host/frontend/dist/</code> and starts the server; or build it yourself with
<code>npm ci &amp;&amp; npm run build</code> in <code>django_host/frontend/</code> and restart
<code>dziri serve</code>.</p>
</body></html>
"""


def index(request, path: str = ""):
    if request.method not in ("GET", "HEAD"):
        response = response_for(MethodNotAllowed(f"{request.method} is not allowed here; use GET"))
        response["Allow"] = "GET, HEAD"
        return response
    try:
        body = (Path(settings.FRONTEND_DIST) / "index.html").read_bytes()
    except FileNotFoundError:
        body = NOT_BUILT.encode()
    response = HttpResponse(body if request.method == "GET" else b"", content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["Cache-Control"] = "no-cache"  # always revalidate: it names the current hashed assets
    return response
