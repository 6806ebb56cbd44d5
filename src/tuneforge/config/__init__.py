"""Typed run configuration: loaded and validated once, at the edge."""

from tuneforge.config.errors import ConfigError, DataError, TuneforgeError

__all__ = ["ConfigError", "DataError", "TuneforgeError"]
