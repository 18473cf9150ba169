"""MIME metadata computed once at delivery, and section extraction for FETCH."""

from mailhaven.mime.metadata import (
    AnalyzedMessage,
    MessageMetadata,
    analyze,
    binary_bytes,
    binary_size,
    header_value,
    preview,
    section_bytes,
    sort_values,
)
from mailhaven.mime.sections import UnknownCTE
from mailhaven.mime.sortkeys import SortData

__all__ = [
    "AnalyzedMessage",
    "MessageMetadata",
    "UnknownCTE",
    "analyze",
    "binary_bytes",
    "binary_size",
    "header_value",
    "preview",
    "section_bytes",
    "sort_values",
    "SortData",
]
