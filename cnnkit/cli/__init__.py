"""The command-line interface (``cnnkit --help``)."""
from .main import main

__all__ = ["main"]
