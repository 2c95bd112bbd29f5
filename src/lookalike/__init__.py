"""lookalike: content-based image similarity search (nearest, random and farthest images).

The public names are imported on first use (PEP 562), so ``import lookalike`` stays cheap (a Ray
worker that needs one submodule does not load the whole API).
"""

__version__ = "0.1.0"

_HOME = {"Index": "lookalike.api", "Match": "lookalike.api", "QueryResult": "lookalike.api",
         "ImageError": "lookalike.images", "StoreError": "lookalike.index.store",
         "ModelError": "lookalike.models.errors"}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_HOME[name]), name)
