"""Undo HTTP content codings (gzip, deflate, br, zstd) with a hard cap on the output.

Bodies are archived exactly as they came over the wire; whoever needs the text
(the worker for links, the parse stage for fields) decodes them here. Every
decoder is driven in bounded steps (``decompress(data, max_length)``,
brotli's ``output_buffer_limit``, zstd's ``stream_reader``), so a decompression
bomb costs at most ``max_bytes`` of output plus one step, never its full size.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import Protocol

from shoal.errors import ArchiveError

__all__ = ["MAX_LAYERS", "content_decode"]

MAX_LAYERS = 2
"""The most content codings stacked on one body that :func:`content_decode` undoes."""

_STEP = 64 * 1024
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024
"""RFC 8878 bounds the window of HTTP zstd content to 8 MiB; larger frames are refused."""

_GZIP_MAGIC = b"\x1f\x8b"


def content_decode(body: bytes, content_encoding: str | None, max_bytes: int) -> tuple[bytes, bool]:
    """Undo the codings named in a ``Content-Encoding`` header, keeping at most ``max_bytes``.

    Returns ``(data, truncated)``. ``data`` is the decoded body, cut at
    ``max_bytes``; ``truncated`` is True when the output was cut at the cap, or
    when the encoded stream ended early or broke after some output (``data`` is
    then everything that decoded cleanly before the break). An empty body or
    ``None``/``identity`` returns the body itself (capped).

    Codings are undone last-applied first; ``x-gzip`` is gzip, ``deflate``
    accepts both zlib-wrapped and raw streams. Raises
    :class:`~shoal.errors.ArchiveError` for an unknown coding, more than
    :data:`MAX_LAYERS` codings, or a stream that yields no output at all
    before failing (a body that is not what its header claims): the caller
    may then fall back to the raw body. Memory stays within the output (twice
    that with two layers) plus one 64 KiB step, whatever the input expands to.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    codings = _parse_codings(content_encoding)
    if not codings:
        return body[:max_bytes], len(body) > max_bytes
    data = body
    truncated = False
    for coding in reversed(codings):
        if not data:
            break
        data, cut = _LAYERS[coding](data, max_bytes)
        truncated = truncated or cut
    return data, truncated


def _parse_codings(header: str | None) -> list[str]:
    if not header:
        return []
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > MAX_LAYERS:
        raise ArchiveError(
            f"{len(codings)} stacked content codings ({header!r}); at most {MAX_LAYERS} are decoded"
        )
    for coding in codings:
        if coding not in _LAYERS:
            raise ArchiveError(f"unsupported content coding {coding!r}")
    return codings


class _Reader(Protocol):
    """One decoding layer read in bounded steps."""

    incomplete: bool
    """Set once the encoded stream ended before its end marker."""

    def read(self, n: int) -> bytes:
        """Up to ``n`` decoded bytes (at least one), or ``b""`` at the end of the stream."""
        ...


def _drain(reader: _Reader, cap: int, coding: str) -> tuple[bytes, bool]:
    """Read ``reader`` up to ``cap`` bytes; memory is the output plus one step."""
    sink = io.BytesIO()
    total = 0
    try:
        while total < cap:
            out = reader.read(min(_STEP, cap - total))
            if not out:
                return sink.getvalue(), reader.incomplete
            sink.write(out)
            total += len(out)
        # At the cap: one more byte tells a body of exactly ``cap`` bytes from a longer one.
        return sink.getvalue(), bool(reader.read(1)) or reader.incomplete
    except _DECODER_ERRORS as exc:
        if total == 0:
            raise ArchiveError(f"body is not valid {coding}: {exc}") from exc
        return sink.getvalue(), True


class _ZlibReader:
    """gzip and deflate; a gzip body may hold several members back to back."""

    def __init__(self, data: bytes, wbits: int) -> None:
        self.incomplete = False
        self._wbits = wbits
        self._d = zlib.decompressobj(wbits)
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int) -> bytes:
        d, view = self._d, self._view
        while True:
            if d.eof:
                if self._wbits > 15 and bytes(view[self._pos : self._pos + 2]) == _GZIP_MAGIC:
                    d = self._d = zlib.decompressobj(self._wbits)
                else:
                    # Bytes after the last member (padding, junk) are ignored, as browsers do.
                    return b""
            piece = view[self._pos : self._pos + _STEP]
            out = d.decompress(piece, n)
            self._pos += len(piece) - len(d.unconsumed_tail) - len(d.unused_data)
            if out:
                return out
            if not d.eof and self._pos >= len(view):
                self.incomplete = True
                return b""


class _BrotliReader:
    """br, bounded through ``output_buffer_limit`` (brotli >= 1.2)."""

    def __init__(self, data: bytes) -> None:
        import brotli

        self.incomplete = False
        self._d = brotli.Decompressor()
        self._input: bytes | None = data
        self._pending = b""

    def read(self, n: int) -> bytes:
        if not self._pending:
            if self._d.is_finished():
                return b""
            data, self._input = self._input or b"", None
            try:
                out = self._d.process(data, output_buffer_limit=_STEP)
            except TypeError as exc:  # brotli < 1.2 cannot bound its output
                raise ArchiveError(
                    "brotli >= 1.2 is needed to decode br bodies with a size cap"
                ) from exc
            if not out:
                # All input was consumed and the stream has not ended.
                self.incomplete = not self._d.is_finished()
                return b""
            self._pending = out
        out, self._pending = self._pending[:n], self._pending[n:]
        return out


class _ZstdReader:
    """zstd, through ``stream_reader`` (``decompressobj`` has no output bound)."""

    def __init__(self, data: bytes) -> None:
        import zstandard

        self.incomplete = False
        self._data = data
        self._reader = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).stream_reader(
            data, read_size=_STEP, read_across_frames=True
        )

    def read(self, n: int) -> bytes:
        out: bytes = self._reader.read(n)
        if not out:
            # The reader ends silently on a cut stream: check the frame layout instead.
            self.incomplete = not _zstd_frames_complete(self._data)
        return out


def _decoder_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [zlib.error]
    try:
        import brotli

        errors.append(brotli.error)
    except ImportError:  # pragma: no cover - brotli is a dependency
        pass
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)


_DECODER_ERRORS = _decoder_errors()


def _gzip(data: bytes, cap: int) -> tuple[bytes, bool]:
    # wbits 47 = 32 + 15: accept a gzip or a zlib header (servers mislabel both ways).
    return _drain(_ZlibReader(data, 47), cap, "gzip")


def _deflate(data: bytes, cap: int) -> tuple[bytes, bool]:
    # RFC 9110 "deflate" is zlib-wrapped, but many servers send raw deflate: sniff the zlib header.
    zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
    return _drain(_ZlibReader(data, 15 if zlib_header else -15), cap, "deflate")


def _brotli(data: bytes, cap: int) -> tuple[bytes, bool]:
    return _drain(_BrotliReader(data), cap, "br")


def _zstd(data: bytes, cap: int) -> tuple[bytes, bool]:
    return _drain(_ZstdReader(data), cap, "zstd")


def _zstd_frames_complete(data: bytes) -> bool:
    """Whether ``data`` is a sequence of whole zstd frames (RFC 8878 section 3), by walking block headers."""
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < 4:
            return False
        magic = int.from_bytes(data[pos : pos + 4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            if n - pos < 8:
                return False
            pos += 8 + int.from_bytes(data[pos + 4 : pos + 8], "little")
            continue
        if magic != 0xFD2FB528:
            return pos > 0  # junk after whole frames; the decoder already judged it
        pos += 4
        if pos >= n:
            return False
        descriptor = data[pos]
        pos += 1
        single_segment = (descriptor >> 5) & 1
        pos += 0 if single_segment else 1
        pos += (0, 1, 2, 4)[descriptor & 3]
        pos += (single_segment, 2, 4, 8)[descriptor >> 6]
        while True:
            if n - pos < 3:
                return False
            header = int.from_bytes(data[pos : pos + 3], "little")
            pos += 3
            block_type = (header >> 1) & 3
            if block_type == 3:
                return False
            pos += 1 if block_type == 1 else header >> 3
            if pos > n:
                return False
            if header & 1:
                break
        pos += 4 if (descriptor >> 2) & 1 else 0
        if pos > n:
            return False
    return n > 0


_LAYERS: dict[str, Callable[[bytes, int], tuple[bytes, bool]]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}
