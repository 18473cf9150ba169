"""The COMPRESS=DEFLATE layer (RFC 4978): raw DEFLATE (RFC 1951) in both directions.

Sans-IO: the connection feeds it received bytes and asks for inflated data in bounded
chunks, and passes every outgoing response through :meth:`DeflateStream.compress`.

* Raw deflate without zlib header or checksum: window bits -15 (RFC 4978 section 4,
  "the windowBits value must be in the range -8 to -15").
* Every compressed write ends with a sync flush (``Z_SYNC_FLUSH``), so each response
  is complete on the wire when it is written: an idling client sees an update at
  once instead of when the compressor's buffer happens to fill.
* Inflated output is produced at most ``max_chunk`` bytes at a time: a few kilobytes
  of compressed input can expand a thousandfold, and the framer's limits only help
  if the server never materialises more than it is about to frame.
"""

from __future__ import annotations

import zlib

RAW_DEFLATE_WINDOW_BITS = -15
# RFC 4978 section 4 suggests a level of 1-5 for responses: most of the gain, little CPU.
COMPRESSION_LEVEL = 5
DEFAULT_MAX_CHUNK = 256 * 1024


class CompressedDataError(Exception):
    """The peer sent data that is not a valid raw DEFLATE stream, or ended it."""


class DeflateStream:
    """Compression state of one connection after COMPRESS DEFLATE."""

    def __init__(self, max_chunk: int = DEFAULT_MAX_CHUNK) -> None:
        self._max_chunk = max_chunk
        self._compressor = zlib.compressobj(
            COMPRESSION_LEVEL, zlib.DEFLATED, RAW_DEFLATE_WINDOW_BITS
        )
        self._decompressor = zlib.decompressobj(RAW_DEFLATE_WINDOW_BITS)
        self._input = b""
        # A full chunk may leave output inside zlib even when all input was used.
        self._output_pending = False

    def compress(self, data: bytes) -> bytes:
        """*data* compressed and sync-flushed: the peer can inflate all of it now."""
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def feed(self, data: bytes) -> None:
        """Queue compressed bytes received from the peer."""
        self._input += data

    @property
    def has_input(self) -> bool:
        """True while queued compressed bytes have not been fully inflated yet."""
        return bool(self._input) or self._output_pending

    def inflate(self) -> bytes:
        """Up to ``max_chunk`` inflated bytes from the queued input (maybe none,
        e.g. for a bare flush marker); call again while :attr:`has_input`."""
        data, self._input = self._input, b""
        try:
            inflated = self._decompressor.decompress(data, self._max_chunk)
        except zlib.error as error:
            raise CompressedDataError(f"invalid compressed data: {error}") from None
        if self._decompressor.eof:
            # A final block ends the stream; IMAP has no way to go back to plain text.
            raise CompressedDataError("the client ended the compressed stream")
        self._input = self._decompressor.unconsumed_tail
        self._output_pending = len(inflated) == self._max_chunk
        return inflated
