"""Reading DICOM inputs up to their pixel data (the writing side is :mod:`dicomveil.io.write`).

A well-formed file's header (everything before Pixel Data) is cut into pydicom's raw elements
by a quick scan (:mod:`dicomveil.io.scan`); any other file is parsed by pydicom, which reports
or tolerates what is unusual about it. Values are decoded only when something asks. The Pixel
Data element is only located (:class:`PixelSpan`), never read: the writer copies its bytes.
Deflated files are the exception: their dataset is compressed as a whole, so pydicom reads
them in memory. Inputs are opened read-only.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from dicomveil.errors import InputError
from dicomveil.io.scan import Keep, scan
from dicomveil.io.sniffing import bare_dataset
from dicomveil.io.truncation import check_end, check_lengths, check_meta_end

_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
_DEFER = 256 * 1024
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
# VRs whose explicit encoding has a 4-byte length (PS3.5 7.1.2), as bytes.
_LONG_VRS = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32)


@dataclass(frozen=True)
class PixelSpan:
    """Where the Pixel Data element lies in the input: header and value, in bytes.

    Attributes
    ----------
    tag : int
        The element's tag: Pixel Data, or Float or Double Float Pixel Data.
    start : int
        Offset of the element's tag.
    value_start : int
        Offset of its value (the first item, when encapsulated).
    end : int
        Offset just past its value (or where the sequence delimiter starts).
    vr : str
        As found, or as the dictionary and the data imply for implicit VR input.
    encapsulated : bool
        The value is a sequence of items (compressed pixel data).
    after : int
        Where the next element starts (past any sequence delimiter).
    fragments : int
        Encapsulated: the items after the Basic Offset Table.
    """

    tag: int
    start: int  # offset of the element's tag
    value_start: int  # offset of its value (the first item, when encapsulated)
    end: int  # offset just past its value (or past the sequence delimiter)
    vr: str  # as found, or as the dictionary and the data imply for implicit VR input
    encapsulated: bool = False
    after: int = 0  # where the next element starts (past any sequence delimiter)
    fragments: int = 0  # encapsulated: items after the Basic Offset Table


@dataclass
class SourceFile:
    """A DICOM input read up to its bulk data.

    Attributes
    ----------
    path : Path
        The file read.
    dataset : Dataset
        Its elements up to Pixel Data (and those after it), values decoded on demand.
    transfer_syntax : UID
        The input's transfer syntax; the output is written in it.
    pixels : PixelSpan or None
        Where the pixel data lies in the file; None without pixel data, or when the
        dataset was read whole (deflated).
    little_endian : bool
        The byte order of the pixel data bytes as found.
    raw_copy : bool
        Elements left unchanged may be copied as bytes from the input.
    head : bytes or None
        The input's bytes before the pixel data, when the quick scan kept them.
    """

    path: Path
    dataset: Dataset
    transfer_syntax: UID  # the output is written in it
    pixels: PixelSpan | None
    little_endian: bool = True  # of the pixel data bytes as found
    raw_copy: bool = False  # unchanged elements may be copied as bytes from the input
    head: bytes | None = field(default=None, repr=False)  # the input's bytes before pixels

    @property
    def has_pixel_data(self) -> bool:
        """Whether the input has pixel data (located, or in the dataset)."""
        return self.pixels is not None or any(t in self.dataset for t in _PIXEL_TAGS)

    @property
    def is_dicomdir(self) -> bool:
        """Whether the input is a DICOMDIR (its SOP class, or a directory record sequence)."""
        ds = self.dataset
        if 0x00041220 in ds._dict:
            return True
        meta = getattr(ds, "file_meta", None)
        return _is_dicomdir_class(ds, 0x00080016) or (
            meta is not None and _is_dicomdir_class(meta, 0x00020002)
        )


def read_source(path: Path, *, quick: bool = True) -> SourceFile:
    """Parse a file up to Pixel Data and locate the pixel data's byte span.

    A well-formed file is scanned quickly (:mod:`dicomveil.io.scan`); any other is read by
    pydicom.

    Parameters
    ----------
    path : Path
        The input file.
    quick : bool
        Try the quick scan first; False reads with pydicom straight away, for a caller
        whose own :func:`read_scanned` already declined the file.

    Returns
    -------
    SourceFile
        The dataset up to its bulk data and where the pixel data lies.

    Raises
    ------
    InputError
        The file is not DICOM or cannot be parsed (the message names the file, never its
        content).
    """
    scanned = read_scanned(path) if quick else None
    if scanned is not None:
        return scanned
    return _read_with_pydicom(path)


def read_scanned(path: Path, keep: Keep | None = None) -> SourceFile | None:
    """Read a well-formed file by the quick scan (:mod:`dicomveil.io.scan`).

    Parameters
    ----------
    path : Path
        The input file.
    keep : callable, optional
        Only the top-level elements it keeps (see :func:`~dicomveil.io.scan.scan`), for a
        reader of a few values: the pixel data's frames are then not checked against the
        dataset, nor is the SOP Instance UID required. None: every element.

    Returns
    -------
    SourceFile or None
        The file read, or None when it needs a closer look: :func:`sniff` and
        :func:`read_source` tell what it is and what is wrong with it.
    """
    try:
        with path.open("rb") as fh:
            scanned = scan(fh, str(path), keep)
            if scanned is None:
                return None
            ds = scanned.dataset
            ts = _transfer_syntax(ds, ds.file_meta)
            pixels: PixelSpan | None = None
            if scanned.pixel_start < scanned.size:
                pixels = _pixel_span(fh, scanned.pixel_start, ts.is_implicit_VR, True, scanned.size)
                if pixels is None or pixels.after < scanned.size:
                    return None  # elements after the pixel data: pydicom reads those
                if keep is None:
                    _check_frames(ds, pixels)
    except Exception:  # pydicom's reader reads it again and says what is wrong
        return None
    if keep is None and 0x00080018 not in ds._dict and not _is_directory(ds):
        return None
    ds.preamble = b"\x00" * 128
    return SourceFile(path, ds, ts, pixels, little_endian=True, raw_copy=True, head=scanned.head)


def _read_with_pydicom(path: Path) -> SourceFile:
    try:
        with path.open("rb") as fh, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            head = fh.read(132)
            fh.seek(0)
            has_prefix = len(head) >= 132 and head[128:132] == b"DICM"
            if not has_prefix and not bare_dataset(head):
                raise InputError("not a DICOM file (no DICM prefix)", path=str(path))
            ds = dcmread(fh, stop_before_pixels=True, defer_size=_DEFER, force=not has_prefix)
            meta = getattr(ds, "file_meta", None)
            ts = _transfer_syntax(ds, meta)
            # The encoding actually found (a few files disagree with their own meta).
            found_implicit, found_little = ds.original_encoding
            implicit = ts.is_implicit_VR if found_implicit is None else bool(found_implicit)
            little = ts.is_little_endian if found_little is None else bool(found_little)
            if little != ts.is_little_endian:
                raise InputError("byte order differs from the transfer syntax", path=str(path))
            if ts == DeflatedExplicitVRLittleEndian:
                # The whole dataset is one zlib stream: read it fully (no streaming).
                fh.seek(0)
                full = dcmread(fh, force=not has_prefix)
                return SourceFile(path, full, ts, None)
            position = fh.tell()
            size = os.fstat(fh.fileno()).st_size
            pixels: PixelSpan | None = None
            after: Dataset | None = None  # what follows the pixel data
            if position < size and position + 8 > size:
                # pydicom stops without a word when the file ends inside an element header.
                raise EOFError("the file ends inside an element header")
            if position + 8 <= size:
                pixels = _pixel_span(fh, position, implicit, little, size)
                _check_frames(ds, pixels)
                if pixels is not None and pixels.after < size:
                    fh.seek(pixels.after)
                    after = read_dataset(fh, implicit, little, defer_size=_DEFER)
                    for tag in list(after.keys()):
                        ds[tag] = after.get_item(tag)
            if meta is not None:
                check_lengths(meta, size)
            check_meta_end(meta, len(ds), size)
            check_lengths(ds, size)
            if pixels is None or after is not None:  # read to the end of the file
                check_end(after if after is not None else ds, fh, size, little, implicit)
            _note_actual_encoding(ds, little)
            for warning in caught:
                text = str(warning.message)
                if "End of file" in text or "EOF" in text or "truncat" in text.lower():
                    raise InputError("truncated: the file ends inside an element", path=str(path))
            if ds.get("SOPInstanceUID") is None and not _is_directory(ds):
                raise InputError(
                    "no SOP Instance UID: not a DICOM composite object", path=str(path)
                )
    except InputError:
        raise
    except (OSError, EOFError) as exc:
        if isinstance(exc, EOFError):
            reason = f"truncated ({exc})" if str(exc) else "truncated"
        else:
            reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot read: {reason}", path=str(path)) from None
    except struct.error:  # pydicom unpacking a header the end of the file cut short
        raise InputError("cannot read: truncated (an element header)", path=str(path)) from None
    except Exception as exc:  # pydicom raises many kinds on malformed input
        raise InputError(f"malformed DICOM ({type(exc).__name__})", path=str(path)) from None
    ds.preamble = b"\x00" * 128
    same_encoding = ds.original_encoding == (ts.is_implicit_VR, ts.is_little_endian)
    return SourceFile(path, ds, ts, pixels, little_endian=little, raw_copy=same_encoding)


def _check_frames(ds: Dataset, pixels: PixelSpan | None) -> None:
    """Each frame needs at least one fragment (PS3.5 A.4): fewer means frames are missing."""
    if pixels is None or not pixels.encapsulated:
        return
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return
    if pixels.fragments < frames:
        raise EOFError(f"{frames} frames but {pixels.fragments} pixel data fragments")


def _note_actual_encoding(ds: Dataset, little: bool) -> None:
    """pydicom falls back to implicit VR when an 'explicit' file is not; record what was
    found, so the writer re-encodes the elements instead of copying implicit bytes."""
    for tag in list(ds.keys())[:4]:
        raw = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement):
            if raw.is_implicit_VR != ds.original_encoding[0]:
                ds.set_original_encoding(raw.is_implicit_VR, little, ds.original_character_set)
            return


def _is_directory(ds: Dataset) -> bool:
    return 0x00041220 in ds


def raw_uid_text(ds: Dataset, tag: int) -> str | None:
    """The text of an undecoded UID element holding one plain ASCII value, as pydicom would
    decode it, read without decoding it; None when absent, decoded already or otherwise (a
    VR other than UI among them: pydicom's decoding then reports a damaged one)."""
    element = ds._dict.get(tag)  # type: ignore[call-overload]
    if not isinstance(element, RawDataElement) or element.VR not in ("UI", None):
        return None
    value = element.value
    if not isinstance(value, bytes) or not value.isascii() or b"\\" in value:
        return None
    return value.decode("ascii").strip("\x00 ")


def uid_value(ds: Dataset, tag: int) -> object:
    """A UID element's value as pydicom gives it (None when absent), read from the bytes
    where they hold one plain value (:func:`raw_uid_text`), else decoded by pydicom."""
    if tag not in ds._dict:
        return None
    text = raw_uid_text(ds, tag)
    return text if text is not None else ds[tag].value


def _is_dicomdir_class(ds: Dataset, tag: int) -> bool:
    """Whether the UID at ``tag`` is the Media Storage Directory Storage SOP Class."""
    return str(uid_value(ds, tag) or "") == _DICOMDIR_CLASS


def _transfer_syntax(ds: Dataset, meta: FileMetaDataset | None) -> UID:
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    if value:
        uid = UID(str(value))
        if uid.is_transfer_syntax:
            return uid
        # Never the value: a damaged length can make it the rest of the file.
        raise InputError("unknown transfer syntax in TransferSyntaxUID (0002,0010)")
    # No file meta: the encoding pydicom found while reading.
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def _pixel_span(
    fh: BinaryIO, start: int, implicit: bool, little: bool, size: int
) -> PixelSpan | None:
    endian = "<" if little else ">"
    fh.seek(start)
    header = fh.read(8)
    group, element = struct.unpack(endian + "HH", header[:4])
    tag = (group << 16) | element
    if tag not in _PIXEL_TAGS:
        return None
    # Trust the bytes over the transfer syntax: a few files are encoded otherwise.
    implicit = header[4:6] not in _LONG_VRS and not (
        header[4:6].isalpha() and header[4:6].isupper()
    )
    if implicit:
        (length,) = struct.unpack(endian + "I", header[4:8])
        value_start = start + 8
        vr = ""
    elif header[4:6] in _LONG_VRS:
        (length,) = struct.unpack(endian + "I", fh.read(4))
        value_start = start + 12
        vr = header[4:6].decode("ascii")
    else:
        (length,) = struct.unpack(endian + "H", header[6:8])
        value_start = start + 8
        vr = header[4:6].decode("ascii", "replace")
    if not vr:
        vr = {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(tag, "OB" if length == 0xFFFFFFFF else "")
    if length != 0xFFFFFFFF:
        end = value_start + length
        if end > size:
            raise EOFError("pixel data is truncated")
        return PixelSpan(tag, start, value_start, end, vr, False, end)
    # Encapsulated: items until the sequence delimiter; only item headers are read.
    position = value_start
    items = 0
    while True:
        fh.seek(position)
        item = fh.read(8)
        if len(item) < 8:
            raise EOFError("encapsulated pixel data ends without its sequence delimiter")
        item_group, item_element, item_length = struct.unpack(endian + "HHI", item)
        position += 8
        if (item_group, item_element) == (0xFFFE, 0xE0DD):
            return PixelSpan(
                tag, start, value_start, position - 8, vr, True, position, max(0, items - 1)
            )
        if (item_group, item_element) != (0xFFFE, 0xE000) or item_length == 0xFFFFFFFF:
            raise ValueError("malformed encapsulated pixel data")
        items += 1
        position += item_length
        if position > size:
            raise EOFError("encapsulated pixel data is truncated")


def iter_files(root: Path) -> Iterator[Path]:
    """Every entry under ``root`` (or ``root`` itself) that is not a folder it walks into, in
    a stable order.

    Parameters
    ----------
    root : Path
        A file or a folder.

    Yields
    ------
    Path
        ``root`` when it is not a folder; else every entry under it that is not a folder
        (FIFOs and links included: see :func:`special_file_reason`), folder by folder,
        sorted by name; a symbolic link to a folder (never followed), and a folder that
        cannot be listed, are given too, so that the caller reports them.
    """
    if not root.is_dir():  # a file, or a FIFO or device given by name (the caller skips it)
        yield root
        return
    unlisted: list[Path] = []

    def note(error: OSError) -> None:
        if error.filename is not None:
            unlisted.append(Path(error.filename))

    for folder, dirs, files in os.walk(root, onerror=note):
        yield from sorted(unlisted)
        unlisted.clear()
        dirs.sort()
        base = Path(folder)
        entries = [base / name for name in files]
        entries += [base / name for name in dirs if (base / name).is_symlink()]
        yield from sorted(entries)
    yield from sorted(unlisted)


def regular_files(root: Path) -> Iterator[Path]:
    """The regular files of :func:`iter_files` (what reading a folder back needs: never a
    FIFO, a device, a link out of ``root`` or a folder).

    Parameters
    ----------
    root : Path
        A file or a folder.

    Yields
    ------
    Path
        Each regular file, in the order of :func:`iter_files`.
    """
    for path in iter_files(root):
        if special_file_reason(path, root) is None and not path.is_dir():
            yield path


_TAG_TEXT = re.compile(r"\(([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\)")


def failure_reason(exc: BaseException) -> str:
    """Why a file could not be read or de-identified, in words that never quote its values.

    The one place where an exception raised while parsing or decoding a file (by pydicom
    or by dicomveil) becomes the reason of a failed file: the element is named by its tag
    when the exception names one, the exception by its kind; its text is never repeated.

    Parameters
    ----------
    exc : BaseException
        What was raised.

    Returns
    -------
    str
        For example ``unknown VR in (0002,0002)`` or ``malformed DICOM (struct.error)``.
    """
    if isinstance(exc, InputError):
        return exc.reason
    text = str(exc)
    found = _TAG_TEXT.search(text)
    where = f" in ({found[1].upper()},{found[2].upper()})" if found else ""
    kind = type(exc).__name__
    if isinstance(exc, NotImplementedError) and "Value Representation" in text:
        return f"unknown VR{where}"
    if kind == "BytesLengthException":
        return f"a value's length does not fit its VR{where}"
    if isinstance(exc, RecursionError):
        return "sequences nested too deep"
    if isinstance(exc, MemoryError):
        return f"a length larger than the memory available{where}"
    if isinstance(exc, EOFError):
        return "truncated: the file ends inside an element"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or kind}"
    return f"malformed DICOM{where} ({kind})"


def special_file_reason(path: Path, root: Path) -> str | None:
    """Why ``path`` (found under the input ``root``) is not read, or None for a regular file.

    Only regular files are read: a FIFO would block the run, a device never ends, and a
    link that leaves the input folder reads what the user did not give.

    Parameters
    ----------
    path : pathlib.Path
        A file found under ``root``.
    root : pathlib.Path
        The input it was found under (a folder, or the file itself).

    Returns
    -------
    str or None
        The reason to skip it, or None.
    """
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            target = path.resolve(strict=True)
            base = root.resolve()
            if path != root and target != base and base not in target.parents:
                return "a symbolic link out of the input folder: not followed"
            info = target.stat()
            if stat.S_ISDIR(info.st_mode):
                return "a symbolic link to a folder: not followed"
    except (OSError, RuntimeError):
        return "a broken symbolic link or an unreadable entry"
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        return None  # a folder here is one that cannot be listed: reading it fails it
    if stat.S_ISFIFO(info.st_mode):
        return "a FIFO, not a regular file: not read"
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        return "a device, not a regular file: not read"
    return "not a regular file: not read"
