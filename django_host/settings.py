"""Django settings for the dziri host, derived from dziri's own configuration (the
`[web]` section of dziri.toml and DZIRI_* variables): there is no second config file.

No database: users and sessions live in the dziri store, so DATABASES is empty and no
contrib app that needs tables (auth, admin, contenttypes) is installed.
"""

from __future__ import annotations

from pathlib import Path

from dziri.core.config import load_config

from .secret import secret_key

_config = load_config()
_web = _config.web

BASE_DIR = Path(__file__).resolve().parent
# The React site, built by Vite (django_host/frontend, `make run`) with base "/static/".
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"

SECRET_KEY = secret_key(_config)
DEBUG = False
_WILDCARD_BINDS = {"0.0.0.0", "::", ""}
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS += [h for h in [_web.host] if h not in _WILDCARD_BINDS and h not in ALLOWED_HOSTS]
ALLOWED_HOSTS += _web.allowed_hosts
CSRF_TRUSTED_ORIGINS = _web.csrf_trusted_origins

INSTALLED_APPS = ["dziri.django_host.api"]
MIDDLEWARE = [
    "dziri.django_host.middleware.HostCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "dziri.django_host.middleware.StaticFilesMiddleware",
    "dziri.django_host.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "dziri.django_host.middleware.ErrorMiddleware",
]
ROOT_URLCONF = "dziri.django_host.urls"
DATABASES: dict = {}
TEMPLATES: list = []

SESSION_ENGINE = "dziri.django_host.sessions"
SESSION_COOKIE_NAME = "dziri_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 14 * 24 * 3600
CSRF_COOKIE_HTTPONLY = False  # the single-page app reads it and sends it back as X-CSRFToken
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "dziri.django_host.api.errors.csrf_failure"

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Django's default hasher list: PBKDF2-SHA256 first. Passwords never leave the server.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

# The largest request body: a message of chat.max_message_chars characters, each one
# \uXXXX\uXXXX-escaped in the worst case, plus room for the rest of the JSON.
MAX_BODY_BYTES = max(256 * 1024, 12 * _config.chat.max_message_chars + 4096)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES

STATIC_URL = "/static/"
STATIC_ROOT = str(FRONTEND_DIST) if FRONTEND_DIST.is_dir() else None
WHITENOISE_IMMUTABLE_FILE_TEST = r"^/static/assets/.+-[A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+$"  # Vite's hashed names

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "filters": {"not_busy": {"()": "django.utils.log.CallbackFilter",
                             "callback": lambda record: getattr(record, "status_code", None) != 503}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        # 5xx only: a 401 or 404 is the API working, not news; a 503 (a full queue, or a
        # backend that is down) is logged once by the host's ErrorMiddleware when it is news.
        "django.request": {"handlers": ["console"], "level": "ERROR", "filters": ["not_busy"], "propagate": False},
        "django.security": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "dziri": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
