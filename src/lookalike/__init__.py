"""lookalike: content-based image similarity search (nearest, random and farthest images)."""

from lookalike.api import Index, Match, QueryResult
from lookalike.images import ImageError

__all__ = ["Index", "Match", "QueryResult", "ImageError"]
__version__ = "0.1.0"
