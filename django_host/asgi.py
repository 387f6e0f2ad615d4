"""The ASGI entry point: `uvicorn dziri.django_host.asgi:application` (what `dziri serve` runs)."""

from .application import DziriASGI

application = DziriASGI()
