from django.urls import include, path, re_path

from .api import site

urlpatterns = [
    path("api/", include("dziri.django_host.api.urls")),
    # Everything else but /api/… and /static/… is the single-page app's to route.
    re_path(r"^(?!api(?:/|$)|static/)(?P<path>.*)$", site.index),
]

handler400 = "dziri.django_host.api.errors.bad_request"
handler403 = "dziri.django_host.api.errors.forbidden"
handler404 = "dziri.django_host.api.errors.not_found"
handler500 = "dziri.django_host.api.errors.server_error"
