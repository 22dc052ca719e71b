"""multipart/related bodies: a STOW-RS request read to disk, a WADO-RS answer written.

A request body is parsed as it arrives by python-multipart's streaming parser, each part
written to its own file in a spool folder: an instance is never held in memory, and the
body is read whole (and found well formed) before anything is stored, so a malformed or
oversized body stores nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "MAX_PARTS",
    "BodyTooLargeError",
    "MalformedBodyError",
    "Part",
    "media_type",
    "new_boundary",
    "read_parts",
    "spool_parts",
    "write_parts",
]

_CHUNK = 1 << 20
MAX_PARTS = 10_000  # instances per STOW-RS request (C-STORE's per-association default)


_MAX_PREAMBLE = 1 << 16  # bytes before the first delimiter (RFC 2046: ignored)
# python-multipart warns of a malformed body with bytes of it ("Expected boundary character
# 45, got 116"): the answer says the body is malformed, and nothing of a body is logged.
logging.getLogger("python_multipart").setLevel(logging.CRITICAL)


class MalformedBodyError(ValueError):
    """The body is not a well-formed multipart message (HTTP 400)."""


class BodyTooLargeError(ValueError):
    """The body is longer than the gateway's ``max_body``, or has more than
    :data:`MAX_PARTS` parts (HTTP 413)."""


@dataclass
class Part:
    """One part of a multipart body, spooled to ``path``."""

    path: Path
    content_type: str = ""
    params: dict[str, str] = field(default_factory=dict)


def media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """A Content-Type header's media type (lower case) and parameters (names lower case).

    Parameters
    ----------
    value : str or None
        The header.

    Returns
    -------
    tuple
        The media type (empty when there is none) and the parameters.
    """
    kind, params = parse_options_header(value or "")
    decoded = {
        name.decode("latin-1").lower(): text.decode("latin-1") for name, text in params.items()
    }
    return kind.decode("latin-1").strip().lower(), decoded


class _Collector:
    """python-multipart's callbacks: each part's headers, and its body into a file."""

    def __init__(self, folder: Path, max_parts: int = MAX_PARTS) -> None:
        self.folder = folder
        self.max_parts = max_parts
        self.parts: list[Part] = []
        self.ended = False
        self._file: BinaryIO | None = None
        self._field = b""
        self._value = b""
        self._headers: dict[str, str] = {}

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.part_begin,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self._headers = {}
        self._field = self._value = b""

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def headers_finished(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise BodyTooLargeError(f"the body has more than {self.max_parts} parts")
        kind, params = media_type(self._headers.get("content-type"))
        path = self.folder / f"part-{len(self.parts):06d}.dcm"
        self.parts.append(Part(path, kind, params))
        self._file = path.open("wb")  # closed by part_end, or close

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            raise MalformedBodyError("a part's data before its headers")
        self._file.write(data[start:end])

    def part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Reading:
    """A multipart body read as it arrives, each part into its own file (see
    :func:`read_parts`)."""

    def __init__(self, boundary: str, folder: Path, max_body: int, max_parts: int) -> None:
        if not boundary or len(boundary) > 70:
            raise MalformedBodyError("the Content-Type has no valid boundary")
        self.collector = _Collector(folder, max_parts)
        self.parser = MultipartParser(boundary, self.collector.callbacks(), max_header_count=32)
        self.max_body = max_body
        self.received = 0
        self.delimiter = b"--" + boundary.encode("latin-1")
        self.preamble: bytearray | None = bytearray()  # until the first delimiter

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.max_body:
            raise BodyTooLargeError(f"the body is longer than {self.max_body} bytes")
        if self.preamble is not None:
            # RFC 2046 5.1.1: what comes before the first delimiter is a preamble, ignored
            self.preamble += chunk
            buffered = self.preamble
            at = (
                0
                if buffered.startswith(self.delimiter)
                else buffered.find(b"\r\n" + self.delimiter)
            )
            if at < 0:
                if len(buffered) > _MAX_PREAMBLE:
                    raise MalformedBodyError("the body is not a well-formed multipart message")
                return
            chunk = bytes(buffered[at + 2 if at else 0 :])
            self.preamble = None
        try:
            self.parser.write(chunk)
        except MultipartParseError:
            raise MalformedBodyError("the body is not a well-formed multipart message") from None

    def finish(self) -> list[Part]:
        if self.preamble is not None:
            raise MalformedBodyError("the body ends before its first boundary")
        try:
            self.parser.finalize()
        except MultipartParseError:
            raise MalformedBodyError("the body is not a well-formed multipart message") from None
        collector = self.collector
        collector.close()
        if not collector.ended or not collector.parts:
            raise MalformedBodyError("the body ends before its closing boundary, or has no part")
        return collector.parts


async def read_parts(
    chunks: AsyncIterator[bytes], boundary: str, folder: Path, max_body: int
) -> list[Part]:
    """Read a whole multipart body into one file per part.

    Parameters
    ----------
    chunks : async iterator of bytes
        The request body as it arrives.
    boundary : str
        The Content-Type's ``boundary`` parameter.
    folder : Path
        Where the parts are written (it exists; the caller removes it).
    max_body : int
        The longest body accepted, in bytes.

    Returns
    -------
    list of Part
        The parts, in order.

    Raises
    ------
    BodyTooLargeError
        The body is longer than ``max_body`` or has more than :data:`MAX_PARTS` parts.
    MalformedBodyError
        The body is not a complete, well-formed multipart message with at least one part.
    """
    reading = _Reading(boundary, folder, max_body, MAX_PARTS)
    try:
        async for chunk in chunks:
            reading.feed(chunk)
        return reading.finish()
    finally:
        reading.collector.close()


def spool_parts(
    chunks: Iterable[bytes], boundary: str, folder: Path, max_parts: int = MAX_PARTS
) -> list[Part]:
    """:func:`read_parts` of a body read in this thread (a WADO-RS answer from an archive):
    one file per part, never a part in memory.

    Parameters
    ----------
    chunks : iterable of bytes
        The body as it arrives.
    boundary : str
        The Content-Type's ``boundary`` parameter.
    folder : Path
        Where the parts are written (it exists; the caller removes it).
    max_parts : int, optional
        The most parts accepted.

    Returns
    -------
    list of Part
        The parts, in order.

    Raises
    ------
    BodyTooLargeError
        The body has more than ``max_parts`` parts.
    MalformedBodyError
        The body is not a complete, well-formed multipart message with at least one part.
    """
    reading = _Reading(boundary, folder, 1 << 62, max_parts)
    try:
        for chunk in chunks:
            reading.feed(chunk)
        return reading.finish()
    finally:
        reading.collector.close()


def new_boundary() -> str:
    """A boundary for a multipart answer (random: it cannot occur in the parts)."""
    return "dicomveil-" + secrets.token_hex(16)


def write_parts(parts: list[tuple[Path, str]], boundary: str) -> Iterator[bytes]:
    """The body of a multipart answer, read from disk a chunk at a time.

    Parameters
    ----------
    parts : list of (Path, str)
        Each part's file and Content-Type.
    boundary : str
        The boundary the answer's Content-Type names.

    Yields
    ------
    bytes
        The body, piece by piece.
    """
    for path, content_type in parts:
        size = path.stat().st_size
        yield (
            f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n\r\n"
        ).encode("latin-1")
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")
