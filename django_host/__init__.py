"""The Django host: the chat site's JSON/SSE API and the built React frontend, served by
uvicorn (`dziri serve`). All chat work goes through the process's `dziri.core.app.App`;
users and login sessions live in the configured store, so the host keeps no state of its
own beyond one process's in-flight replies and login-failure counters."""
