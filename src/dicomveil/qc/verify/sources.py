"""The originals: where they are (files under a folder, members of zip archives), and reading
an input's header."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from pydicom import dcmread
from pydicom.dataelem import RawDataElement

from dicomveil.io import special_file_reason
from dicomveil.qc.verify.elements import _SOP_INSTANCE_UID, _text
from dicomveil.qc.verify.expectations import _Rules
from dicomveil.qc.verify.reading import _Read, _read_header


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return

    def fail(error: OSError) -> None:
        raise error

    for folder, dirs, names in os.walk(root, onerror=fail):
        dirs.sort()
        base = Path(folder)
        for name in sorted(names):
            if special_file_reason(base / name, root) is None:  # never a FIFO: it would block
                yield base / name


def _sources(root: Path) -> Iterator[str]:
    """Every input: files under ``root`` and members of zip archives (``archive!member``)."""
    for path in _files(root):
        # The prefix first: is_zipfile reads up to 64 KiB at the end of a file that is not one.
        if not _has_prefix(path) and zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    names = sorted(i.filename for i in archive.infolist() if not i.is_dir())
            except (zipfile.BadZipFile, OSError):
                continue
            for name in names:
                yield f"{path}!{name}"
        else:
            yield str(path)


def _has_prefix(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # no file object
    except OSError:
        return False
    try:
        os.lseek(fd, 128, os.SEEK_SET)
        return os.read(fd, 4) == b"DICM"
    except OSError:
        return False
    finally:
        os.close(fd)


def _source_bytes(source: str) -> bytes:
    path, _, member = source.partition("!")
    if member and not Path(source).exists():
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    return Path(source).read_bytes()


def _read_input(source: str, rules: _Rules | None = None) -> _Read | None:
    """An input's header (a file's, or a zip member's, read in memory); ``None`` when it is
    not a DICOM composite object. With ``rules``, what the input walk passes over
    (:meth:`_Rules.unwanted`) may be left out of it."""
    skip = rules.skip if rules is not None else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(source)
            if path.exists():
                read = _read_header(path, None, skip)
            else:
                read = _read_header(None, _source_bytes(source), skip)
            if not _text(read.data, _SOP_INSTANCE_UID):
                return None
    except Exception:  # not DICOM, or damaged: pydicom raises many kinds
        return None
    return read


_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float


def _pixel_digest(source: str) -> str | None:
    """The SHA-256 of a file's pixel data value as stored (dicomveil copies it byte for byte,
    so an output and its input share it), read by pydicom; None without pixel data, or when
    the file cannot be read. ``source``: a path, or ``archive!member``. A large value of
    defined length is hashed as it is read from the file, a megabyte at a time, never held
    whole (a 157 MB file's digest took 150 MB of RAM before)."""
    try:
        path = Path(source)
        fh = path.open("rb") if path.exists() else io.BytesIO(_source_bytes(source))
        with fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(fh, force=True, defer_size=_DEFER)
            for tag in _PIXEL_TAGS:
                elem = ds.get_item(tag, keep_deferred=True)  # as stored: not read for this
                if elem is None:
                    continue
                if elem.value is None and isinstance(elem, RawDataElement) and elem.length:
                    streamed = _streamed_digest(fh, elem.value_tell, elem.length)
                    if streamed is not None:
                        return streamed
                    continue
                if isinstance(elem.value, bytes) and elem.value:
                    return hashlib.sha256(elem.value).hexdigest()
    except Exception:  # not DICOM, or damaged: pydicom raises many kinds
        return None
    return None


_DEFER: Final = 1 << 16  # values longer than this pydicom leaves in the file
_CHUNK: Final = 1 << 20


def _streamed_digest(fh: BinaryIO, start: int, length: int) -> str | None:
    """The SHA-256 of ``length`` bytes of ``fh`` from ``start`` (what the file holds of them,
    as pydicom's read of the value would give); None when it holds none."""
    digest = hashlib.sha256()
    fh.seek(start)
    remaining = length
    while remaining:
        chunk = fh.read(min(_CHUNK, remaining))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    return digest.hexdigest() if remaining < length else None
