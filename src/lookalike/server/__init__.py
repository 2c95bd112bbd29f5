"""The web page and HTTP API behind ``lookalike serve``."""

from lookalike.server.app import create_app

__all__ = ["create_app"]
