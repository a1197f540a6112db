"""The package version, in a leaf module: code inside the package reads it from here, never
from the package ``__init__`` (which imports the build and everything under it)."""

__version__ = "0.1.0"
