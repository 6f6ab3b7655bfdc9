"""The package version, in one place (the manifest and `--version` read it)."""

__version__ = "0.2.0"
