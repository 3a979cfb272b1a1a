"""The REST API: a thin Starlette layer over the core services (see :func:`create_app`)."""

from .app import create_app

__all__ = ["create_app"]
