from django.urls import include, path, re_path

from .api import openai, site

urlpatterns = [
    path("api/", include("dziri.django_host.api.urls")),
    # The OpenAI-compatible API (docs/api.md), its own errors included.
    path("v1/models", openai.openai_view("GET", openai.list_models)),
    path("v1/chat/completions", openai.openai_view("POST", openai.chat_completions)),
    re_path(r"^v1(?:/(?P<path>.*))?$", openai.not_found),
    # Everything else but /api/…, /v1/… and /static/… is the single-page app's to route.
    re_path(r"^(?!api(?:/|$)|v1(?:/|$)|static/)(?P<path>.*)$", site.index),
]

handler400 = "dziri.django_host.api.errors.bad_request"
handler403 = "dziri.django_host.api.errors.forbidden"
handler404 = "dziri.django_host.api.errors.not_found"
handler500 = "dziri.django_host.api.errors.server_error"
