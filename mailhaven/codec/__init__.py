"""Sans-IO IMAP codec: framing, parsing and encoding, with no I/O of its own.

- :mod:`~mailhaven.codec.protocol`: :class:`ServerProtocol`, bytes in, events out.
- :mod:`~mailhaven.codec.framing`: cuts the byte stream into commands and literals.
- :mod:`~mailhaven.codec.parser`: parses a framed command into :mod:`.commands`.
- :mod:`~mailhaven.codec.mailbox_names`: modified UTF-7 / UTF-8 mailbox names.
- :mod:`~mailhaven.codec.wire` and :mod:`~mailhaven.codec.responses`: server output.
"""

from mailhaven.codec.errors import ProtocolError
from mailhaven.codec.protocol import (
    CommandReceived,
    CommandRejected,
    ContinuationNeeded,
    Event,
    Limits,
    RawLine,
    ServerProtocol,
)

__all__ = [
    "CommandReceived",
    "CommandRejected",
    "ContinuationNeeded",
    "Event",
    "Limits",
    "ProtocolError",
    "RawLine",
    "ServerProtocol",
]
