"""The library's version, in one place (read by ``pyproject.toml`` and ``config.json``)."""

__version__ = "0.1.0"
