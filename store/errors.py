"""Errors the stores raise. The use cases above map them to API errors."""
from __future__ import annotations


class DuplicateKey(Exception):
    """Raised by a document store when a unique constraint is violated."""
