"""Undoing HTTP content codings (gzip, deflate, br, zstd): one incremental decoder with a hard cap.

Bodies are archived exactly as they came over the wire; whoever needs the
bytes decoded uses :class:`StreamDecoder`: the fetcher chunk by chunk while a
body streams in, the worker, robots.txt and the parse stage through
:func:`content_decode` on a whole body. Both are the same code.

Guarantees:

- **Bounded memory.** Every layer is driven in bounded steps
  (``decompress(data, max_length)``, brotli's ``output_buffer_limit``, a zstd
  ``stream_writer`` whose sink stops at the cap), and each layer's output is
  capped, so a decompression bomb costs at most the cap per layer plus one
  64 KiB step, never what it would expand to.
- **Cut and broken streams keep their prefix.** A stream that ends before its
  end marker, or breaks after some output, keeps everything that decoded
  cleanly (reported as truncated); one that yields nothing before failing is
  not what its header claims (the caller keeps the raw body).
- **What is decoded.** Codings are undone last-applied first; ``x-gzip`` is
  gzip and a gzip body may hold several members; ``deflate`` accepts both the
  zlib-wrapped form RFC 9110 names and the raw form many servers send; zstd
  frames may use an 8 MiB window at most (RFC 9659). At most
  :data:`MAX_LAYERS` stacked codings are undone.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import IO, Any, Final, cast

from shoal.errors import ContentCodingError

__all__ = [
    "KNOWN_CODINGS",
    "MAX_LAYERS",
    "StreamDecoder",
    "coding_problem",
    "content_codings",
    "content_decode",
]

MAX_LAYERS: Final = 2
"""The most content codings stacked on one body that are undone."""

KNOWN_CODINGS: Final = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})

_STEP = 64 * 1024
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024
"""RFC 9659 bounds the window of HTTP zstd content to 8 MiB; larger frames are refused."""
_GZIP_MAGIC = b"\x1f\x8b"


def content_codings(header: str | None) -> list[str] | None:
    """The codings of a ``Content-Encoding`` header in the order applied, without ``identity``.

    Returns None when a coding is unknown (servers send labels such as
    ``utf-8`` there; the body is then taken as it is, as browsers do) and
    raises :class:`~shoal.errors.ContentCodingError` for more than
    :data:`MAX_LAYERS` stacked codings.
    """
    if not header:
        return []
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if any(c not in KNOWN_CODINGS for c in codings):
        return None
    if len(codings) > MAX_LAYERS:
        raise ContentCodingError(
            f"{len(codings)} stacked content codings ({header.strip()!r}); "
            f"at most {MAX_LAYERS} are decoded"
        )
    return codings


def coding_problem(header: str | None) -> str | None:
    """Why a body with this ``Content-Encoding`` cannot be decoded (too many layers), else None."""
    try:
        content_codings(header)
    except ContentCodingError as exc:
        return str(exc)
    return None


def content_decode(body: bytes, content_encoding: str | None, max_bytes: int) -> tuple[bytes, bool]:
    """Undo the codings named in a ``Content-Encoding`` header, keeping at most ``max_bytes``.

    Returns ``(data, truncated)``: ``data`` is the decoded body cut at
    ``max_bytes``; ``truncated`` is True when the output was cut at the cap,
    or the encoded stream ended early or broke after some output. An empty
    body, or no coding, returns the body itself (capped). Raises
    :class:`~shoal.errors.ContentCodingError` for an unknown coding, more than
    :data:`MAX_LAYERS` codings, or a stream that yields no output at all
    before failing (the caller may fall back to the raw body).
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    codings = content_codings(content_encoding)
    if codings is None:
        raise ContentCodingError(f"unsupported content coding {content_encoding!r}")
    if not codings:
        return body[:max_bytes], len(body) > max_bytes
    decoder = StreamDecoder(codings, max_bytes)
    data = decoder.feed(body)
    decoder.finish()
    if decoder.failed is not None:
        raise ContentCodingError(decoder.failed)
    return data, decoder.over or decoder.broken is not None or decoder.incomplete


class StreamDecoder:
    """Undoes a response's content codings chunk by chunk, never producing more than ``cap`` bytes.

    Feed raw chunks with :meth:`feed`, then call :meth:`finish` once the body
    ended. After the output passes the cap, :attr:`over` is True and further
    input is ignored. A stream that breaks after some output stops decoding
    and keeps that output (:attr:`broken`); one that yields nothing before
    breaking is not what its header says (:attr:`failed`: the caller keeps
    the raw body instead); one that ended before its end marker is
    :attr:`incomplete` (set by :meth:`finish`).
    """

    def __init__(self, codings: list[str], cap: int) -> None:
        self.cap = cap
        self.codings = codings
        self.size = 0
        self.over = False
        self.broken: str | None = None
        self.failed: str | None = None
        self.incomplete = False
        self._layers: list[_Layer] = [_make_layer(c) for c in reversed(codings)]
        self._sizes = [0] * len(self._layers)
        self._fed = [False] * len(self._layers)

    @property
    def stopped(self) -> bool:
        """True once no more output will come (over the cap, broken or failed)."""
        return self.over or self.broken is not None or self.failed is not None

    def feed(self, data: bytes) -> bytes:
        """Decode one raw chunk; returns the new decoded bytes (already cut at the cap)."""
        if self.stopped or not data:
            return b""
        try:
            for i, layer in enumerate(self._layers):
                self._fed[i] = True
                room = self.cap - self._sizes[i]
                data = layer.feed(data, room)
                self._sizes[i] += len(data)
                if len(data) > room:
                    self.over = True
                    data = data[:room]
                if not data:
                    break
        except _DECODER_ERRORS as exc:
            coding = ", ".join(self.codings)
            if self.size == 0 and not any(self._sizes):
                self.failed = f"body is not valid {coding}: {exc}"
            else:
                self.broken = f"{coding} stream broken after {self.size} bytes: {exc}"
            return b""
        self.size += len(data)
        return data

    def finish(self) -> None:
        """The body ended: set :attr:`incomplete` when a layer had not reached its end marker."""
        if self.stopped:
            return
        self.incomplete = any(
            fed and not layer.finished for fed, layer in zip(self._fed, self._layers, strict=True)
        )


# -- layers ------------------------------------------------------------------------------------


class _Full(Exception):
    """Raised by a zstd sink when its layer reached the cap."""


class _Layer:
    """One content coding, decoded incrementally; ``feed`` returns at most ``room + 1`` bytes (plus one step)."""

    def feed(self, data: bytes, room: int) -> bytes:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """Whether the stream reached its end marker."""
        raise NotImplementedError


class _ZlibLayer(_Layer):
    """gzip (several members allowed) or deflate (zlib-wrapped or raw, sniffed)."""

    def __init__(self, gzip: bool) -> None:
        # wbits 47 = 32 + 15: a gzip or a zlib header (servers mislabel both ways).
        self._gzip = gzip
        self._d: Any = zlib.decompressobj(47) if gzip else None
        self._carry = b""
        self._done = False

    @property
    def finished(self) -> bool:
        return self._done or (self._d is not None and self._d.eof)

    def feed(self, data: bytes, room: int) -> bytes:
        data = self._carry + data
        self._carry = b""
        if self._d is None:  # deflate: a zlib header or a raw stream? (servers send both)
            if len(data) < 2:
                self._carry = data
                return b""
            zlib_header = data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._d = zlib.decompressobj(15 if zlib_header else -15)
        out = bytearray()
        while data and not self._done and len(out) <= room:
            d = self._d
            piece = d.decompress(data, min(_STEP, room + 1 - len(out)))
            out += piece
            if d.eof:
                rest = d.unused_data
                if self._gzip and rest[:2] == _GZIP_MAGIC:
                    self._d = zlib.decompressobj(47)
                    data = rest
                elif self._gzip and rest == b"\x1f":
                    self._carry, data = rest, b""
                else:
                    self._done = True  # bytes after the last member are ignored, as browsers do
            else:
                if not piece and d.unconsumed_tail == data:
                    break
                data = d.unconsumed_tail
        return bytes(out)


class _BrotliLayer(_Layer):
    """br, bounded through ``output_buffer_limit`` (brotli >= 1.2)."""

    def __init__(self) -> None:
        import brotli

        self._d = brotli.Decompressor()

    @property
    def finished(self) -> bool:
        return bool(self._d.is_finished())

    def feed(self, data: bytes, room: int) -> bytes:
        d = self._d
        if d.is_finished():
            return b""
        out = bytearray(d.process(data, output_buffer_limit=_STEP))
        while len(out) <= room and not d.is_finished():
            more = d.process(b"", output_buffer_limit=_STEP)
            if not more:
                break
            out += more
        return bytes(out)


class _ZstdLayer(_Layer):
    """zstd through ``stream_writer``: its sink stops the decoder once the layer is over the cap."""

    def __init__(self) -> None:
        import zstandard

        self._parts: list[bytes] = []
        self._size = 0
        self._limit = 0
        self._frames = _ZstdFrames()
        self._w = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).stream_writer(
            cast(IO[bytes], self), write_size=_STEP, closefd=False
        )

    @property
    def finished(self) -> bool:
        return self._frames.complete

    def write(self, data: bytes) -> int:
        """The stream writer's sink (not for callers)."""
        self._parts.append(bytes(data))
        self._size += len(data)
        if self._size > self._limit:
            raise _Full
        return len(data)

    def feed(self, data: bytes, room: int) -> bytes:
        self._frames.feed(data)
        self._parts, self._size, self._limit = [], 0, room
        with contextlib.suppress(_Full):
            self._w.write(data)
        out, self._parts = b"".join(self._parts), []
        return out


class _ZstdFrames:
    """Follows zstd frame and block headers (RFC 8878 section 3) as bytes pass.

    The zstd stream decoder ends silently on a cut stream; this walker tells a
    sequence of whole frames from a cut one, holding at most 4 bytes.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._want = 4
        self._skip = 0
        self._state = "magic"
        self._checksum = False
        self._frames = 0
        self._bad = False

    @property
    def complete(self) -> bool:
        """Whether the bytes so far are whole frames (junk after whole frames is allowed)."""
        if self._state == "junk":
            return self._frames > 0 and not self._bad
        return self._state == "magic" and not self._skip and not self._buf and self._frames > 0

    def feed(self, data: bytes) -> None:
        """Walk ``data``, the next bytes of the stream."""
        view = memoryview(data)
        while view and self._state != "junk":
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                continue
            need = self._want - len(self._buf)
            self._buf += view[:need]
            view = view[need:]
            if len(self._buf) < self._want:
                return
            head = bytes(self._buf)
            self._buf.clear()
            self._step(head)

    def _step(self, head: bytes) -> None:
        if self._state == "magic":
            magic = int.from_bytes(head, "little")
            if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame: a 4-byte size follows
                self._state = "skippable"
            elif magic == 0xFD2FB528:
                self._state, self._want = "descriptor", 1
            else:
                self._state = "junk"  # after whole frames: the decoder already judged it
        elif self._state == "skippable":
            self._skip = int.from_bytes(head, "little")
            self._frames += 1
            self._state = "magic"
        elif self._state == "descriptor":
            descriptor = head[0]
            single_segment = (descriptor >> 5) & 1
            self._skip = (
                (0 if single_segment else 1)
                + (0, 1, 2, 4)[descriptor & 3]
                + (single_segment, 2, 4, 8)[descriptor >> 6]
            )
            self._checksum = bool((descriptor >> 2) & 1)
            self._state, self._want = "block", 3
        else:  # block header
            header = int.from_bytes(head, "little")
            block_type = (header >> 1) & 3
            if block_type == 3:
                self._state, self._bad = "junk", True
                return
            self._skip = 1 if block_type == 1 else header >> 3
            if header & 1:  # last block of the frame
                self._skip += 4 if self._checksum else 0
                self._frames += 1
                self._state, self._want = "magic", 4


def _decoder_errors() -> tuple[type[Exception], ...]:
    import brotli
    import zstandard

    return (zlib.error, brotli.error, zstandard.ZstdError)


_DECODER_ERRORS = _decoder_errors()


def _make_layer(coding: str) -> _Layer:
    if coding in ("gzip", "x-gzip"):
        return _ZlibLayer(gzip=True)
    if coding == "deflate":
        return _ZlibLayer(gzip=False)
    if coding == "br":
        return _BrotliLayer()
    return _ZstdLayer()
