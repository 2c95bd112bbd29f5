"""The web page and HTTP API behind ``lookalike serve``."""

from lookalike.server.app import create_app
from lookalike.server.uploads import stalled_headers_answered_408

__all__ = ["create_app", "stalled_headers_answered_408"]
