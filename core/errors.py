"""The one error tree: every exception the project raises on purpose, importable from here.

    CollectorError                      (okx.errors: the root)
     +-- ConfigError                    a setting cannot work; the message names it
"""
from __future__ import annotations

from okx.errors import CollectorError

__all__ = ["CollectorError", "ConfigError"]


class ConfigError(CollectorError, ValueError):
    """The configuration cannot work; the message says which setting and why."""
