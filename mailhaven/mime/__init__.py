"""MIME metadata computed once at delivery, and section extraction for FETCH."""

from mailhaven.mime.metadata import (
    AnalyzedMessage,
    MessageMetadata,
    analyze,
    binary_bytes,
    binary_size,
    header_value,
    section_bytes,
)
from mailhaven.mime.sections import UnknownCTE

__all__ = [
    "AnalyzedMessage",
    "MessageMetadata",
    "UnknownCTE",
    "analyze",
    "binary_bytes",
    "binary_size",
    "header_value",
    "section_bytes",
]
