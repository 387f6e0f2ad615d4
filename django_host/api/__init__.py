"""The host's one Django app: the JSON/SSE API under /api/ and the single-page site."""
