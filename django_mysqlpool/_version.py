"""The package's version, in one place (pyproject.toml reads it too)."""

__version__ = "1.0.0.dev0"
