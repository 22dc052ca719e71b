"""Writing de-identified DICOM files atomically (the reading side is :mod:`dicomveil.io.read`).

Elements the engine left untouched are copied as bytes from the input; the changed ones are
encoded (:mod:`dicomveil.io.encoding`, byte for byte what pydicom writes). The Pixel Data
element itself (native or encapsulated, any size) is never decoded nor held in memory: its
bytes are copied from the input to the output by the kernel (``copy_file_range``), or in
chunks where that is not possible. Deflated files are the exception: their dataset is
compressed as a whole, so pydicom writes them in memory.

Output files are written to a temporary name in the destination folder and renamed into
place, so an interrupted run never leaves a half-written file. The File Meta group is always
a fresh one (:func:`build_file_meta`): dicomveil's identity, nothing of the source's.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO, DicomIO
from pydicom.filewriter import (
    dcmwrite,
    write_data_element,
    write_dataset,
)
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from dicomveil._version import __version__
from dicomveil.errors import InputError
from dicomveil.io.encoding import LONG_VRS, Encoder, Encodings
from dicomveil.io.read import PixelSpan, SourceFile, failure_reason, uid_value

# dicomveil's implementation class UID: 2.25 + the UUID5 of "dicomveil" in the URL namespace.
IMPLEMENTATION_CLASS_UID = UID("2.25.191839452806390734566826271547002622372")
IMPLEMENTATION_VERSION = f"DICOMVEIL_{__version__}".replace(".", "")[:16]
TEMP_SUFFIX = ".dvtmp"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PixelSource:
    """Pixel Data to write instead of the input's bytes (redacted burned-in text).

    Attributes
    ----------
    data : bytes
        The element's value in the output's transfer syntax: native pixel bytes, or, when
        ``encapsulated``, the items (Basic Offset Table and fragments) without the sequence
        delimiter, which the writer adds.
    encapsulated : bool
        Whether ``data`` holds encapsulated (compressed) pixel data.
    """

    data: bytes
    encapsulated: bool = False


def build_file_meta(ds: Dataset, transfer_syntax: UID) -> FileMetaDataset:
    """Build a fresh File Meta group: no source AE title, no private information, our identity.

    Parameters
    ----------
    ds : Dataset
        The dataset to be written: its SOP Class and SOP Instance UIDs are used.
    transfer_syntax : UID
        The transfer syntax the dataset is written in.

    Returns
    -------
    FileMetaDataset
        The File Meta group, without its group length.
    """
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

    The file is written to a temporary name in the destination folder (made if missing) and
    renamed into place; on any error the temporary file is removed.

    Parameters
    ----------
    source : SourceFile
        The input ``ds`` was read from: its pixel data and unchanged elements are copied.
    ds : Dataset
        The de-identified dataset.
    destination : Path
        The output file.
    durable : bool
        Fsync the file and its folder before returning.
    pixels : bytes or PixelSource or None
        Pixel data replacing the source's (bytes: native); by default the source's is
        copied byte for byte.

    Returns
    -------
    int
        The number of bytes written.

    Raises
    ------
    OSError
        The output cannot be written.
    ValueError
        Replacement pixel data for a file without Pixel Data, or of another encapsulation.
    """
    replacement = PixelSource(pixels) if isinstance(pixels, bytes) else pixels

    def fill(raw: BinaryIO) -> None:
        if replacement is None:
            _write(source, ds, raw)
        else:
            _write_replaced(source, ds, raw, replacement)

    # A file the quick scan read is well formed and everything written is either its own
    # checked bytes or freshly encoded; a file pydicom's lenient reader had to read may
    # carry damage through: it is read back before it counts as written.
    check = None if source.head is not None else _check_readable
    return _write_atomically(destination, fill, durable=durable, check=check)


def _check_readable(path: Path) -> None:
    """Read ``path`` back with pydicom, every element decoded; raise when it cannot be.

    Raises
    ------
    InputError
        The written file cannot be read back (why, without its values).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, stop_before_pixels=True)
            for _ in ds.iterall():
                pass
    except Exception as exc:
        reason = failure_reason(exc)
        raise InputError(f"the output could not be read back ({reason}): not written") from None


def _write_atomically(
    destination: Path,
    fill: Callable[[BinaryIO], None],
    *,
    durable: bool,
    check: Callable[[Path], None] | None = None,
) -> int:
    """Write a file by ``fill(raw)`` to a temporary name in the destination folder (made if
    missing), ``check`` it, and rename it into place; on any error the temporary file is
    removed. Returns the number of bytes written. ``raw`` is unbuffered: a write may take
    less than given."""
    fd, temp_name = _temporary(destination.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb", buffering=0) as raw:
            fill(raw)
            if durable:
                os.fsync(raw.fileno())
            size = raw.tell()
            os.fchmod(raw.fileno(), 0o644)
        if check is not None:
            check(temp)
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
    tail: Dataset | None = None  # elements after the pixel data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if encoder is not None:
            tail = _write_elements(head, encoder, ds, source, pixels, charset)
        else:
            if pixels is not None:
                tail = Dataset()
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
        if tail is not None and len(tail):
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
    sop_class, sop_instance = uid_value(ds, 0x00080016), uid_value(ds, 0x00080018)
    if not all(
        isinstance(v, str) and v.isascii() and "\\" not in v for v in (sop_class, sop_instance)
    ):
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
    out: bytearray,
    encoder: Encoder,
    ds: Dataset,
    source: SourceFile,
    pixels: PixelSpan | None,
    encoding: Encodings,
) -> Dataset | None:
    """The dataset's elements before the pixel data in tag order: those the engine left
    untouched (still pydicom's raw elements, read from this file in this encoding) are
    copied as bytes from the input; the others are encoded (:mod:`dicomveil.io.encoding`).
    ``encoding`` is the dataset's Specific Character Set. Returns the elements that follow
    the pixel data (None when there are none)."""
    end = pixels.start if pixels is not None else None
    last = pixels.tag if pixels is not None else 0xFFFFFFFF
    tail: Dataset | None = None
    head = source.head
    if head is None or (end is not None and len(head) < end):
        with source.path.open("rb") as src:
            head = src.read(end) if end is not None else src.read()
    limit = len(head)
    tag_at = struct.Struct("<I" if encoder.little else ">I").unpack_from
    implicit = encoder.implicit
    # Sorted by the tag as an int (pydicom's tags compare in Python); tags are unique.
    for number, tag, elem in sorted([(int(t), t, e) for t, e in ds.items()]):
        if number > last:
            if tail is None:
                tail = Dataset()
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
    """Copy ``source`` byte for byte to ``destination`` (the ``original`` profile),
    atomically as :func:`write_output` writes, and return the number of bytes written.

    With ``durable`` the copy and its folder are fsynced before it counts as written.

    Raises
    ------
    OSError
        The input cannot be read or the output cannot be written.
    """

    def fill(raw: BinaryIO) -> None:
        with source.open("rb") as src:
            while chunk := src.read(_CHUNK):
                _write_all(raw, chunk)

    return _write_atomically(destination, fill, durable=durable)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (errors are ignored).

    Parameters
    ----------
    folder : Path
        The folder whose entries changed.
    """
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class OutputClaim:
    """A run's hold on its output folder: an exclusive ``flock`` on the folder itself (no
    file in it), taken before the temporaries an interrupted run left are removed, so that
    a second run into the folder neither removes the first one's files in flight nor
    writes beside it (see :func:`claim_output`)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        """Let the folder go (at the run's end)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def claim_output(root: Path) -> OutputClaim:
    """Hold ``root`` (an existing output folder) for this run, then remove the temporaries
    an interrupted run left in it (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    root : Path
        The output folder.

    Returns
    -------
    OutputClaim
        The hold; :meth:`OutputClaim.release` at the run's end.

    Raises
    ------
    InputError
        Another process holds the folder (a run writing into it), or it cannot be opened.
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot open the output folder ({reason})", path=str(root)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(
            "another run is writing into the output folder: wait for it to end", path=str(root)
        ) from None
    remove_stale_temporaries(root)
    return OutputClaim(fd)


def remove_stale_temporaries(root: Path) -> int:
    """Delete temporary files an interrupted run left behind.

    Parameters
    ----------
    root : Path
        The output folder (searched recursively); it may not exist.

    Returns
    -------
    int
        How many temporary files were deleted.
    """
    count = 0
    if not root.exists():
        return 0
    for temp in root.rglob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            temp.unlink()
            count += 1
    return count


def make_folder(folder: Path, what: str) -> None:
    """Create ``folder`` (and its parents) unless it exists.

    Parameters
    ----------
    folder : pathlib.Path
        The folder.
    what : str
        What it is, for the message (``the output folder``).

    Raises
    ------
    InputError
        When a file stands where the folder should be, or it cannot be created.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{what} exists and is not a folder", path=str(folder)) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot create {what} ({reason})", path=str(folder)) from None
