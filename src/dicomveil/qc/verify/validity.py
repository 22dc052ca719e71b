"""The validity check: every value legal for its VR and character set, and ``dciodvfy``
(dicom3tools, where installed) finding no IOD error that the matched input did not already
have (once per distinct structure by default: see :class:`~dicomveil.qc.verify.IodCheck`)."""

from __future__ import annotations

import re
import subprocess
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Final

import pydicom.config
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import validate_value

from dicomveil.qc.verify.context import _FileState
from dicomveil.qc.verify.elements import (
    _DEFLATED,
    _STRING_VRS,
    _Data,
    _encodings,
    _is_instance_uid_element,
    _items,
    _joined,
    _keyword,
    _Node,
    _nodes,
    _raw_values,
    _text,
    _unread,
    _values,
)
from dicomveil.qc.verify.report import Category, IodCheck
from dicomveil.qc.verify.sources import _read_input, _source_bytes

# A rebuilt file meta takes these from the dataset: an invalid value there is inherited.
_META_SOURCE: Final[dict[tuple[int, ...], tuple[int, ...]]] = {
    (0x00020002,): (0x00080016,),
    (0x00020003,): (0x00080018,),
}
_BINARY_SIZES: Final = {
    "AT": 4,
    "FD": 8,
    "FL": 4,
    "OD": 8,
    "OF": 4,
    "OL": 4,
    "OV": 8,
    "OW": 2,
    "SL": 4,
    "SS": 2,
    "SV": 8,
    "UL": 4,
    "US": 2,
    "UV": 8,
}


def _validate(check: _FileState, node: _Node, values: list[str], legal: bool) -> None:
    vr = node.vr
    invalid = Category.INVALID_VALUE
    if not legal:
        message = "bytes outside its character set"
        check.invalid.append((node, _joined(values), Category.CHARACTER_SET, message))
        return
    if vr in _BINARY_SIZES:
        size = len(node.raw) if node.raw is not None else _unread(node)
        if size is not None and size % _BINARY_SIZES[vr]:
            message = f"{size} bytes: not a whole number of {vr} values"
            check.invalid.append((node, "", invalid, message))
            return
    for index, value in enumerate(values):
        problem = _invalid(vr, value)
        if problem is not None:
            detail = f" ({problem})" if check.ctx.show_values else ""
            message = f"value {index + 1} is not valid for VR {vr}{detail}"
            check.invalid.append((node, _joined(values), invalid, message))
            return


# Per process: (VR, encodings, bytes) of values :func:`_validate` found nothing wrong with (a
# pure function of them), which the output walk then passes over.
_VALID: set[tuple[str, tuple[str, ...], bytes]] = set()


@lru_cache(maxsize=1 << 16)  # codes, numbers and dates repeat from file to file
def _invalid(vr: str, value: str) -> str | None:
    """pydicom's reason why the value is not legal for the VR, or None."""
    try:
        validate_value(vr, value, pydicom.config.RAISE)
    except ValueError as exc:
        return str(exc)
    return None


def _aligned(ds: _Data) -> dict[tuple[int, ...], tuple[str, str]]:
    """Key -> (VR, joined value) of every string element of an input, at any depth."""
    found: dict[tuple[int, ...], tuple[str, str]] = {}

    def collect(sub: _Data, inherited: tuple[str, ...], key: tuple[int, ...]) -> None:
        encodings, _unknown = _encodings(sub, inherited)
        for node in _nodes(sub, 0, key, "", encodings, 0):
            if node.vr == "SQ":
                for item, _base, item_key, _prefix in _items(sub, node):
                    collect(item, encodings, item_key)
                continue
            values, _legal = _values(node)
            if values:
                found[node.key] = (node.vr, "\\".join(values))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collect(ds, ("ascii",), ())
    return found


def _report_invalid(check: _FileState, source: str | None) -> None:
    """The invalid values found, except those the matched input already had."""
    everything: Mapping[tuple[int, ...], tuple[str, str]] = {}
    if check.invalid and source is not None:  # rare: read the input again
        read = _read_input(source)
        everything = _aligned(read.data) if read is not None else {}
    for node, joined, category, message in check.invalid:
        before = everything.get(_META_SOURCE.get(node.key, node.key))
        if before is not None and joined and before[1].casefold() == joined:
            check.outcome.inherited_invalid += 1
            continue
        check.add(node.path, category, message)


# --------------------------------------------------------------------------------------------
# dciodvfy (dicom3tools)

_ASSIGNED_VALUE: Final = re.compile(r"(\[\d+\] = )<.*?>(?= - |$)")
_OFFENDING_CHARACTER: Final = re.compile(r"'.' \(0x[0-9a-fA-F]+\)")
_QUOTED: Final = re.compile(r'"[^"]*"')
_ENUMERATED: Final = re.compile(r"(value )<[^<>]*>")
_UID_OR_DECIMAL: Final = re.compile(r"(?<![0-9A-Za-z])[0-9]+(?:\.[0-9]+)+")
_MULTI_VALUE: Final = re.compile(r"(values are ).*$")
_TRAILING_NUMBER: Final = re.compile(r"(?<= )[0-9]+$")
_ANGLED: Final = re.compile(r"<[^<>]*>")
_CAMEL: Final = re.compile(r"^(?:[A-Z][a-z0-9]+)+$")  # keywords and module names, not values
_IOD_TAG: Final = re.compile(r"\(0x([0-9a-fA-F]{4}),0x([0-9a-fA-F]{4})\)")
_IOD_ELEMENT: Final = re.compile(r"Element=<([A-Za-z0-9]+)>")
_META_AS_DATASET: Final = (
    ("(0x0002,0x0003) UI Media Storage SOP Instance UID", "(0x0008,0x0018) UI SOP Instance UID"),
    ("(0x0002,0x0003) Media Storage SOP Instance UID", "(0x0008,0x0018) SOP Instance UID"),
    ("(0x0002,0x0002) UI Media Storage SOP Class UID", "(0x0008,0x0016) UI SOP Class UID"),
    ("(0x0002,0x0002) Media Storage SOP Class UID", "(0x0008,0x0016) SOP Class UID"),
)


def _shape(check: _FileState, node: _Node, values: list[str], items: int = 0) -> None:
    """Feed the structure signature: what an IOD check depends on, not free values."""
    if check.ctx.iod is not IodCheck.STRUCTURE or check.ctx.dciodvfy is None:
        return
    vr = node.vr
    if vr == "SQ":
        shape = str(items)
    elif vr in _STRING_VRS:
        coded = vr == "CS" or (vr == "UI" and not _is_instance_uid_element(node.keyword))
        shape = f"{len(values)}:" + ("\\".join(values) if coded else "")
    elif node.raw is not None and vr in _BINARY_SIZES and len(node.raw) <= 64:
        shape = node.raw.hex()
    else:
        shape = str(node.length)
    check.signature.update(f"{node.key}{vr}{shape};".encode())


def _shape_passed(
    check: _FileState,
    encodings: tuple[str, ...],
    key: tuple[int, ...],
    vr: str,
    raw: bytes,
    length: int,
) -> None:
    """:func:`_shape` of an element the output walk passes over (see :attr:`_Rules.passable`:
    public, read raw, no UID and no sequence), without its node."""
    if vr in _STRING_VRS:
        values = _raw_values(raw, vr, encodings)[0]
        shape = f"{len(values)}:" + ("\\".join(values) if vr == "CS" else "")
    elif vr in _BINARY_SIZES and len(raw) <= 64:
        shape = raw.hex()
    else:
        shape = str(length)
    check.signature.update(f"{key}{vr}{shape};".encode())


def _iod(check: _FileState, source: str | None) -> None:
    program = check.ctx.dciodvfy
    if program is None:
        return
    sample = check.ctx.iod is IodCheck.STRUCTURE
    signature = check.signature.digest()
    known = _IOD_BY_STRUCTURE.get(signature) if sample else None
    if known is None:
        after = _dciodvfy(program, check.path)
        before = _input_iod_errors(program, source) if after and source is not None else {}
        known = {k: v for k, v in after.items() if k not in before}
        if sample:
            _IOD_BY_STRUCTURE[signature] = known
    for normalised, line in sorted(known.items()):
        check.add(
            _iod_path(line),
            Category.IOD_ERROR,
            f"dciodvfy: {line if check.ctx.show_values else normalised}",
        )


def normalise(line: str) -> str:
    """A dciodvfy error message without the values it quotes (they differ after
    de-identification): the key by which the errors of an input and its output compare.

    Parameters
    ----------
    line : str
        One ``Error - ...`` line of dciodvfy.

    Returns
    -------
    str
        The line with quoted values, offending characters, UIDs and numbers blanked.
    """
    text = line.strip()
    for meta, dataset in _META_AS_DATASET:
        text = text.replace(meta, dataset)
    text = _ASSIGNED_VALUE.sub(r"\1<>", text)
    text = _OFFENDING_CHARACTER.sub("'?'", text)
    text = _QUOTED.sub('""', text)
    text = _ENUMERATED.sub(r"\1<>", text)
    text = _UID_OR_DECIMAL.sub("#", text)
    text = _MULTI_VALUE.sub(r"\1#", text)
    text = _TRAILING_NUMBER.sub("#", text)
    return _ANGLED.sub(lambda m: m[0] if _is_name(m[0][1:-1]) else "<>", text)


def _is_name(text: str) -> bool:
    """A module name or an attribute keyword (``GeneralStudy``, ``StudyID``), not a value."""
    return bool(_CAMEL.match(text)) or tag_for_keyword(text) is not None


def _dciodvfy(program: str, path: Path) -> dict[str, str]:
    """Normalised error -> the first line with it. dciodvfy cannot read a deflated dataset:
    it checks an inflated copy of one."""
    if not _deflated(path):
        return run_dciodvfy(program, path)
    with tempfile.TemporaryDirectory(prefix="dicomveil-verify-") as folder:
        copy = Path(folder) / "inflated.dcm"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(path)
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds.save_as(copy, enforce_file_format=True)
        except Exception:  # what pydicom cannot read is reported by the other checks
            return {}
        return run_dciodvfy(program, copy)


def _deflated(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = read_file_meta_info(path)
    except Exception:
        return False
    return _text(_Data.of(meta), 0x00020010) == _DEFLATED


def run_dciodvfy(program: str, path: Path) -> dict[str, str]:
    """dciodvfy's errors on ``path``: normalised error (:func:`normalise`) -> its first
    line ({} when dciodvfy cannot run)."""
    try:
        completed = subprocess.run(
            [program, str(path)], capture_output=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    # Bytes, split on LF only: a value may hold a CR, which text mode would make a new line.
    output = (completed.stdout + completed.stderr).decode("utf-8", "replace")
    errors: dict[str, str] = {}
    for line in output.split("\n"):
        if line.startswith("Error"):
            errors.setdefault(normalise(line), line.strip())
    return errors


_INPUT_IOD: dict[str, dict[str, str]] = {}  # per process: input -> its errors
_IOD_BY_STRUCTURE: dict[bytes, dict[str, str]] = {}  # structure -> new errors


def _input_iod_errors(program: str, source: str) -> dict[str, str]:
    if source in _INPUT_IOD:
        return _INPUT_IOD[source]
    path, _, member = source.partition("!")
    if member and not Path(source).exists():
        with tempfile.TemporaryDirectory(prefix="dicomveil-verify-") as folder:
            copy = Path(folder) / "input.dcm"
            try:
                copy.write_bytes(_source_bytes(source))
            except (OSError, zipfile.BadZipFile, KeyError):
                return {}
            found = _dciodvfy(program, copy)
    else:
        found = _dciodvfy(program, Path(path))
    _INPUT_IOD[source] = found
    return found


def _iod_path(line: str) -> str:
    element = _IOD_ELEMENT.search(line)
    if element:
        return element[1]
    tag = _IOD_TAG.search(line)
    if tag:
        number = int(tag[1] + tag[2], 16)
        return _keyword(number) or f"({tag[1].upper()},{tag[2].upper()})"
    return "(IOD)"
