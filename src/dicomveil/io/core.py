"""Streaming DICOM I/O: read a file up to its pixel data, write it back with the pixel data
copied byte for byte, atomically.

Reading: a well-formed file's header (everything before Pixel Data) is cut into pydicom's raw
elements by a quick scan (:mod:`dicomveil.io.scan`); any other file is parsed by pydicom, which
reports or tolerates what is unusual about it. Values are decoded only when something asks.

Writing: elements the engine left untouched are copied as bytes from the input; the changed
ones are encoded (:mod:`dicomveil.io.encoding`, byte for byte what pydicom writes). The Pixel
Data element itself (native or encapsulated, any size) is never decoded nor held in memory:
its bytes are copied from the input to the output by the kernel (``copy_file_range``), or in
chunks where that is not possible. Deflated files are the exception: their dataset is
compressed as a whole, so pydicom reads and writes them in memory.

Output files are written to a temporary name in the destination folder and renamed into
place, so an interrupted run never leaves a half-written file; inputs are opened read-only.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO, DicomIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import (
    dcmwrite,
    write_data_element,
    write_dataset,
)
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from dicomveil._version import __version__
from dicomveil.errors import InputError
from dicomveil.io.encoding import LONG_VRS, Encoder
from dicomveil.io.scan import scan

# dicomveil's implementation class UID: 2.25 + the UUID5 of "dicomveil" in the URL namespace.
IMPLEMENTATION_CLASS_UID = UID("2.25.191839452806390734566826271547002622372")
IMPLEMENTATION_VERSION = f"DICOMVEIL_{__version__}".replace(".", "")[:16]
TEMP_SUFFIX = ".dvtmp"
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
_CHUNK = 1 << 20
_DEFER = 256 * 1024
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
# VRs whose explicit encoding has a 4-byte length (PS3.5 7.1.2), as bytes.
_LONG_VRS = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32)


@dataclass(frozen=True)
class PixelSpan:
    """Where the Pixel Data element lies in the input: header and value, in bytes."""

    tag: int
    start: int  # offset of the element's tag
    value_start: int  # offset of its value (the first item, when encapsulated)
    end: int  # offset just past its value (or past the sequence delimiter)
    vr: str  # as found, or as the dictionary and the data imply for implicit VR input
    encapsulated: bool = False
    after: int = 0  # where the next element starts (past any sequence delimiter)
    fragments: int = 0  # encapsulated: items after the Basic Offset Table


@dataclass(frozen=True)
class PixelSource:
    """Pixel Data to write instead of the input's bytes (redacted burned-in text).

    ``data`` is the element's value in the output's transfer syntax: native pixel bytes, or,
    when ``encapsulated``, the items (Basic Offset Table and fragments) without the sequence
    delimiter, which the writer adds.
    """

    data: bytes
    encapsulated: bool = False


@dataclass
class SourceFile:
    """A DICOM input read up to its bulk data."""

    path: Path
    dataset: Dataset
    transfer_syntax: UID  # the output is written in it
    pixels: PixelSpan | None
    little_endian: bool = True  # of the pixel data bytes as found
    raw_copy: bool = False  # unchanged elements may be copied as bytes from the input
    head: bytes | None = field(default=None, repr=False)  # the input's bytes before pixels

    @property
    def has_pixel_data(self) -> bool:
        return self.pixels is not None or any(t in self.dataset for t in _PIXEL_TAGS)

    @property
    def is_dicomdir(self) -> bool:
        meta = getattr(self.dataset, "file_meta", None)
        sop = str(self.dataset.get("SOPClassUID", "") or "")
        media = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
        return _DICOMDIR_CLASS in (sop, media) or 0x00041220 in self.dataset


class Kind(StrEnum):
    """What the first bytes of a file say it is."""

    DICOM = "dicom"
    NOT_DICOM = "not DICOM: skipped, not copied"
    BAD_PREFIX = "damaged DICOM: the 128-byte preamble is not followed by 'DICM'"
    DAMAGED_ZIP = "damaged zip archive: cannot be opened"
    UNREADABLE = "cannot read the file"


def sniff(path: Path) -> Kind:
    """Classify a file by its first bytes: DICOM (a DICM prefix, or a bare dataset starting
    with group 0002 or 0008), damaged DICOM or zip (their markers, broken), or not DICOM."""
    try:
        with path.open("rb") as fh:
            head = fh.read(140)
    except OSError:
        return Kind.UNREADABLE
    if len(head) >= 132 and head[128:132] == b"DICM":
        return Kind.DICOM
    if _bare_dataset(head):
        return Kind.DICOM
    if len(head) >= 136 and head[132:134] in (b"\x02\x00", b"\x00\x02"):
        return Kind.BAD_PREFIX  # a file meta group where it belongs, behind a wrong prefix
    if head.startswith(b"PK\x03\x04"):
        return Kind.DAMAGED_ZIP  # a valid archive is opened before this is asked
    return Kind.NOT_DICOM


def _bare_dataset(head: bytes) -> bool:
    """A dataset without preamble: its first element is (0002,xxxx) or (0008,xxxx)."""
    if len(head) < 8:
        return False
    vr = head[4:6]
    explicit = vr.isalpha() and vr.isupper()
    for endian in ("<", ">"):
        group, element = struct.unpack(endian + "HH", head[:4])
        if group not in (0x0002, 0x0008) or element > 0x0020:
            continue
        if explicit:
            return True
        length: int = struct.unpack(endian + "I", head[4:8])[0]
        if endian == "<" and length < 1024:
            return True
    return False


def read_source(path: Path, *, quick: bool = True) -> SourceFile:
    """Parse a file up to Pixel Data and locate the pixel data's byte span.

    A well-formed file is scanned quickly (:mod:`dicomveil.io.scan`); any other is read by
    pydicom (``quick=False``: by pydicom straight away, for a caller whose own
    :func:`read_scanned` already declined the file). Raises :class:`InputError` (naming the
    file, never its content) when it is not DICOM or cannot be parsed.
    """
    scanned = read_scanned(path) if quick else None
    if scanned is not None:
        return scanned
    return _read_with_pydicom(path)


def read_scanned(path: Path) -> SourceFile | None:
    """The quick scan of a well-formed file (:mod:`dicomveil.io.scan`), or None when the file
    needs a closer look: :func:`sniff` and :func:`read_source` tell what it is and what is
    wrong with it."""
    try:
        with path.open("rb") as fh:
            scanned = scan(fh, str(path))
            if scanned is None:
                return None
            ds = scanned.dataset
            ts = _transfer_syntax(ds, ds.file_meta)
            pixels: PixelSpan | None = None
            if scanned.pixel_start < scanned.size:
                pixels = _pixel_span(fh, scanned.pixel_start, ts.is_implicit_VR, True,
                                     scanned.size)  # fmt: skip
                if pixels is None or pixels.after < scanned.size:
                    return None  # elements after the pixel data: pydicom reads those
                _check_frames(ds, pixels)
    except Exception:  # pydicom's reader reads it again and says what is wrong
        return None
    if ds.get("SOPInstanceUID") is None and not _is_directory(ds):
        return None
    ds.preamble = b"\x00" * 128
    return SourceFile(path, ds, ts, pixels, little_endian=True, raw_copy=True,
                      head=scanned.head)  # fmt: skip


def _read_with_pydicom(path: Path) -> SourceFile:
    try:
        with path.open("rb") as fh, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            head = fh.read(132)
            fh.seek(0)
            has_prefix = len(head) >= 132 and head[128:132] == b"DICM"
            if not has_prefix and not _bare_dataset(head):
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
            if position < size and position + 8 > size:
                # pydicom stops without a word when the file ends inside an element header.
                raise EOFError("the file ends inside an element header")
            if position + 8 <= size:
                pixels = _pixel_span(fh, position, implicit, little, size)
                _check_frames(ds, pixels)
                if pixels is not None and pixels.after < size:
                    fh.seek(pixels.after)
                    tail = read_dataset(fh, implicit, little, defer_size=_DEFER)
                    for tag in list(tail.keys()):
                        ds[tag] = tail.get_item(tag)
            _check_lengths(ds, size)
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
    except Exception as exc:  # pydicom raises many kinds on malformed input
        raise InputError(f"malformed DICOM ({type(exc).__name__})", path=str(path)) from None
    ds.preamble = b"\x00" * 128
    same_encoding = ds.original_encoding == (ts.is_implicit_VR, ts.is_little_endian)
    return SourceFile(path, ds, ts, pixels, little_endian=little, raw_copy=same_encoding)


def _check_lengths(ds: Dataset, size: int) -> None:
    """pydicom reads a value cut short by the end of the file silently: refuse it."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.length == 0xFFFFFFFF:
            continue
        if raw.value is None:
            if raw.value_tell + raw.length > size:
                raise EOFError("a value runs past the end of the file")
        elif isinstance(raw.value, bytes) and len(raw.value) < raw.length:
            raise EOFError("a value is cut short by the end of the file")


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


def _transfer_syntax(ds: Dataset, meta: FileMetaDataset | None) -> UID:
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    if value:
        uid = UID(str(value))
        if uid.is_transfer_syntax:
            return uid
        raise InputError(f"unknown transfer syntax {uid}")
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


# --------------------------------------------------------------------------------------------
# Writing


def build_file_meta(ds: Dataset, transfer_syntax: UID) -> FileMetaDataset:
    """A fresh File Meta group: no source AE title, no private information, our identity."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def _write_file_meta(fp: DicomIO, meta: FileMetaDataset) -> None:
    """The File Meta group (explicit VR little endian) behind its group length. The meta is
    built here from known-valid values, so pydicom's checks of a foreign meta are skipped."""
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    for tag in sorted(meta.keys()):
        write_data_element(body, meta[tag])
    encoded = body.getvalue()
    write_data_element(fp, DataElement(0x00020000, "UL", len(encoded)))
    fp.write(encoded)


def write_output(
    source: SourceFile,
    ds: Dataset,
    destination: Path,
    *,
    durable: bool = False,
    pixels: bytes | PixelSource | None = None,
) -> int:
    """Write ``ds`` (de-identified) with the source's pixel data to ``destination`` atomically.

    ``pixels`` replaces the source's pixel data (bytes: native); by default it is copied
    byte for byte. Returns the number of bytes written.
    """
    if isinstance(pixels, bytes):
        pixels = PixelSource(pixels)
    fd, temp_name = _temporary(destination.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb", buffering=0) as raw:
            if pixels is None:
                _write(source, ds, raw)
            else:
                _write_replaced(source, ds, raw, pixels)
            if durable:
                os.fsync(raw.fileno())
            size = raw.tell()
            os.fchmod(raw.fileno(), 0o644)
        temp.replace(destination)
        if durable:
            fsync_dir(destination.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return size


def _temporary(folder: Path) -> tuple[int, str]:
    """A new temporary file in ``folder``, made first if it does not exist yet."""
    try:
        return tempfile.mkstemp(prefix=".", suffix=TEMP_SUFFIX, dir=folder)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=".", suffix=TEMP_SUFFIX, dir=folder)


def _write(
    source: SourceFile, ds: Dataset, out: BinaryIO, replacement: bytes | None = None
) -> None:
    transfer_syntax = source.transfer_syntax
    if source.pixels is None and transfer_syntax == DeflatedExplicitVRLittleEndian:
        ds.file_meta = build_file_meta(ds, transfer_syntax)
        ds.preamble = b"\x00" * 128
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcmwrite(buffer, ds, enforce_file_format=True)
        _write_all(out, buffer.getvalue())
        return
    head = bytearray(b"\x00" * 128 + b"DICM")  # everything before the pixel data: one write
    head += _file_meta_bytes(ds, transfer_syntax)
    implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    pixels = source.pixels
    charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
    encoder = Encoder.of(implicit=implicit, little=little) if source.raw_copy else None
    tail = Dataset()  # elements after the pixel data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if encoder is not None:
            tail = _write_elements(head, encoder, ds, source, pixels)
        else:
            if pixels is not None:
                for tag in [t for t in ds.keys() if int(t) > pixels.tag]:
                    tail[tag] = ds.get_item(tag)
                    del ds[tag]
            head += _pydicom_dataset(ds, implicit, little)
        if pixels is not None:
            head += _pixel_header(pixels, ds, implicit, little)
        _write_all(out, head)
        if pixels is None:
            return
        if replacement is None:
            _copy_span(source.path, pixels.value_start, pixels.end, out)
        else:
            _write_all(out, replacement)
        after = bytearray()
        if pixels.encapsulated:
            after += struct.pack("<HHI" if little else ">HHI", 0xFFFE, 0xE0DD, 0)
        if len(tail):
            if encoder is not None:
                encoder.dataset(after, tail, charset)
            else:
                after += _pydicom_dataset(tail, implicit, little, charset)
        _write_all(out, after)


def _write_all(out: BinaryIO, data: bytes | bytearray) -> None:
    """Write all of ``data``: an unbuffered file may take less than it is given."""
    view = memoryview(data)
    while view:
        written = out.write(view)
        if not written:
            raise OSError("the output file takes no more bytes")
        view = view[written:]


def _pydicom_dataset(
    ds: Dataset, implicit: bool, little: bool, charset: str | list[str] = "ISO_IR 6"
) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds, parent_encoding=charset)
    return fp.getvalue()


def _file_meta_bytes(ds: Dataset, transfer_syntax: UID) -> bytes:
    """The File Meta group (explicit VR little endian) behind its group length.

    Every value is known to be valid, so the bytes are put together directly; an unusual
    SOP Class or Instance UID (not a single ASCII string) goes through pydicom instead.
    """
    sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    if not all(isinstance(v, str) and v.isascii() and "\\" not in v
               for v in (sop_class, sop_instance)):  # fmt: skip
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        _write_file_meta(fp, build_file_meta(ds, transfer_syntax))
        return fp.getvalue()
    body = bytearray(b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01")
    for element, vr, value, pad in (
        (0x0002, b"UI", str(sop_class), b"\x00"),
        (0x0003, b"UI", str(sop_instance), b"\x00"),
        (0x0010, b"UI", str(transfer_syntax), b"\x00"),
        (0x0012, b"UI", str(IMPLEMENTATION_CLASS_UID), b"\x00"),
        (0x0013, b"SH", IMPLEMENTATION_VERSION, b" "),
    ):
        data = value.encode("ascii")
        if len(data) % 2:
            data += pad
        body += struct.pack("<HH2sH", 0x0002, element, vr, len(data)) + data
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + bytes(body)


def _write_replaced(source: SourceFile, ds: Dataset, out: BinaryIO, pixels: PixelSource) -> None:
    """Write with new pixel data: the source's span (or in-memory Pixel Data) is replaced."""
    span = source.pixels
    if span is None:
        # Deflated (or no span found): the dataset is written whole by pydicom.
        if "PixelData" not in ds:
            raise ValueError("replacement pixel data for a file without Pixel Data")
        ds.PixelData = pixels.data
        ds["PixelData"].is_undefined_length = pixels.encapsulated
        if pixels.encapsulated:
            ds["PixelData"].VR = "OB"
        _write(source, ds, out)
        return
    if span.encapsulated != pixels.encapsulated:
        raise ValueError("replacement pixel data must keep the source's encapsulation")
    length = 0xFFFFFFFF if pixels.encapsulated else len(pixels.data)
    replaced = replace(span, value_start=0, end=length if length != 0xFFFFFFFF else 0)
    _write(replace(source, pixels=replaced), ds, out, pixels.data)


def _write_elements(
    out: bytearray, encoder: Encoder, ds: Dataset, source: SourceFile, pixels: PixelSpan | None
) -> Dataset:
    """The dataset's elements before the pixel data in tag order: those the engine left
    untouched (still pydicom's raw elements, read from this file in this encoding) are
    copied as bytes from the input; the others are encoded (:mod:`dicomveil.io.encoding`).
    Returns the elements that follow the pixel data."""
    end = pixels.start if pixels is not None else None
    last = pixels.tag if pixels is not None else 0xFFFFFFFF
    tail = Dataset()
    head = source.head
    if head is None or (end is not None and len(head) < end):
        with source.path.open("rb") as src:
            head = src.read(end) if end is not None else src.read()
    limit = len(head)
    tag_at = struct.Struct("<I" if encoder.little else ">I").unpack_from
    implicit = encoder.implicit
    encoding = ds.get("SpecificCharacterSet", "ISO_IR 6")
    # Sorted by the tag as an int (pydicom's tags compare in Python); tags are unique.
    for number, tag, elem in sorted([(int(t), t, e) for t, e in ds.items()]):
        if number > last:
            tail[tag] = elem
            continue
        # UN elements are re-encoded: pydicom restores the dictionary VR where it knows one.
        if isinstance(elem, RawDataElement):
            vr = elem.VR
            if elem.length != 0xFFFFFFFF and vr != "UN":
                header = 8 if implicit or vr not in LONG_VRS else 12
                start, stop = elem.value_tell - header, elem.value_tell + elem.length
                # The tag as stored: group and element as two 16-bit numbers.
                if start >= 0 and stop <= limit and tag_at(head, start)[0] == _swap(tag):
                    out += head[start:stop]
                    continue
                same = elem.is_implicit_VR == implicit and elem.is_little_endian == encoder.little
                if elem.value_tell < 0 and same:
                    # Bytes the engine rewrote (a reference sequence remapped in place):
                    # written as they are, header and value, never decoded.
                    encoder.element(out, elem, encoding)
                    continue
            elem = ds[tag]
        encoder.element(out, elem, encoding)
    return tail


def _swap(tag: int) -> int:
    """A tag as its (group, element) bytes read back as one 32-bit number."""
    return (tag & 0xFFFF) << 16 | tag >> 16


def _pixel_header(pixels: PixelSpan, ds: Dataset, implicit: bool, little: bool) -> bytes:
    """The Pixel Data element's tag, VR and length, in the output's encoding."""
    endian = "<" if little else ">"
    length = 0xFFFFFFFF if pixels.encapsulated else pixels.end - pixels.value_start
    tag = struct.pack(endian + "HH", pixels.tag >> 16, pixels.tag & 0xFFFF)
    if implicit:
        return tag + struct.pack(endian + "I", length)
    vr = pixels.vr
    if vr not in ("OB", "OW", "OF", "OD"):
        vr = "OW" if int(ds.get("BitsAllocated", 8) or 8) > 8 else "OB"
    return tag + vr.encode("ascii") + b"\x00\x00" + struct.pack(endian + "I", length)


def _copy_span(path: Path, start: int, end: int, out: BinaryIO) -> None:
    """Copy bytes ``start:end`` of the input to ``out`` (unbuffered, at its position): in
    the kernel where it can (``copy_file_range``), else through a buffer."""
    with path.open("rb", buffering=0) as src:
        position, remaining = start, end - start
        kernel = hasattr(os, "copy_file_range")
        while remaining:
            if kernel:
                try:
                    copied = os.copy_file_range(src.fileno(), out.fileno(), remaining, position)
                except OSError:
                    kernel = False  # another file system, an old kernel: copy by hand
                    continue
            else:
                src.seek(position)
                chunk = src.read(min(_CHUNK, remaining))
                copied = len(chunk)
                if copied:
                    _write_all(out, chunk)
            if not copied:
                raise EOFError("the input changed while it was being copied")
            position += copied
            remaining -= copied


def copy_file(source: Path, destination: Path, *, durable: bool = False) -> int:
    """A byte-identical copy (the ``original`` profile), written atomically (and with
    ``durable``, fsynced with its folder before it counts as written)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".", suffix=TEMP_SUFFIX, dir=destination.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
            out.flush()
            if durable:
                os.fsync(out.fileno())
            size = out.tell()
        Path(temp).chmod(0o644)
        Path(temp).replace(destination)
        if durable:
            fsync_dir(destination.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return size


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temporaries(root: Path) -> int:
    """Delete temporary files an interrupted run left behind; returns how many."""
    count = 0
    if not root.exists():
        return 0
    for temp in root.rglob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            temp.unlink()
            count += 1
    return count


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` (or ``root`` itself), in a stable order."""
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name
