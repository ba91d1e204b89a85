"""The root of the project's one error tree.

`okx/` is the bottom of the import graph (it imports nothing of the project), so the root class
lives here and every other package's errors derive from it; `core.errors` re-exports the whole
tree, so callers import errors from one place. The tree, drawn in full, is in core/errors.py.
"""
from __future__ import annotations


class CollectorError(Exception):
    """Anything this project raises on purpose. Catch this to catch "any collector error"."""
