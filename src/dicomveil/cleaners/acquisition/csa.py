"""Siemens CSA headers: read with nibabel's reader, filtered, written back.

A CSA header (``SV10``, "CSA2") is a list of named items, each with a VM, a VR, a syngo
data type and up to a few hundred text values. :func:`clean_csa` keeps the items
:func:`~dicomveil.standard.acquisition.csa_policy` allows, cleans the Phoenix protocol text
(:mod:`~dicomveil.cleaners.acquisition.phoenix`), and encodes the result in the same layout,
each item with as many value slots as it had (values first, then empty slots), so a reader
that walks the header finds what it found before, the dropped items aside.

The older CSA1 layout (no ``SV10``) is never kept: converters read CSA2 only.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from dicomveil.cleaners.acquisition.phoenix import keep_number
from dicomveil.standard.acquisition import csa_policy

_MAGIC = b"SV10\x04\x03\x02\x01"
_CHECK = 77  # what every header and item of the files seen carries
_EMPTY_SLOT = 205  # the marker of an unused value slot
_NUMERIC_VRS = frozenset({"IS", "DS", "FL", "FD", "SL", "SS", "UL", "US"})


@dataclass(frozen=True)
class CsaCleaning:
    """The header cleaned: its bytes, and how many items were kept and dropped."""

    data: bytes
    kept: int
    dropped: int


def clean_csa(
    raw: bytes, keep_text: Callable[[str], bool], clean_protocol: Callable[[str], str]
) -> CsaCleaning | None:
    """Keep what the policy allows of one CSA header.

    Parameters
    ----------
    raw : bytes
        The element's value.
    keep_text : callable
        Whether a text value may be kept (the policy's pattern and the file's identifiers).
    clean_protocol : callable
        Cleans the Phoenix protocol text.

    Returns
    -------
    CsaCleaning or None
        None when ``raw`` is not a CSA2 header nibabel can read (the element then goes).
    """
    if not raw.startswith(b"SV10"):
        return None
    read = _reader()  # nibabel is a dependency: a missing one is an error, not a removal
    try:
        header = read(raw)
    except Exception:  # a damaged header, whatever nibabel raises on it: removed
        return None
    kept: list[tuple[str, dict[str, Any], list[str]]] = []
    dropped = 0
    for name, tag in sorted(header["tags"].items(), key=lambda item: item[1]["tag_no"]):
        values = _kept_values(name, tag, keep_text, clean_protocol)
        if values is None:
            dropped += 1
        else:
            kept.append((name, tag, values))
    return CsaCleaning(_encode(kept), len(kept), dropped)


@cache
def _reader() -> Callable[[bytes], dict[str, Any]]:
    """nibabel's CSA reader and its error, imported on first use (nibabel warns, on import
    of its DICOM readers, that they are experimental: the CSA reader is not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import csareader
    read: Callable[[bytes], dict[str, Any]] = csareader.read
    return read


def _kept_values(
    name: str,
    tag: dict[str, Any],
    keep_text: Callable[[str], bool],
    clean_protocol: Callable[[str], str],
) -> list[str] | None:
    """The item's values as text, or None when it goes."""
    policy = csa_policy()
    items = [_text(v) for v in tag["items"]]
    if name == policy.protocol_item:
        return [clean_protocol(v) for v in items]
    if name in policy.numeric and tag["vr"] in _NUMERIC_VRS:
        numbers = all(_is_number(v) and keep_number(v, keep_text) for v in items)
        return items if numbers else None
    if name in policy.text:
        return items if all(policy.text_pattern.match(v) and keep_text(v) for v in items) else None
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _encode(items: list[tuple[str, dict[str, Any], list[str]]]) -> bytes:
    """The CSA2 layout: magic, item count, check; per item its name (64 bytes), VM, VR,
    syngo data type, slot count and check; per slot four lengths and the value, NUL
    terminated, padded to 4 bytes."""
    out = bytearray(_MAGIC)
    out += struct.pack("<2I", len(items), _CHECK)
    for name, tag, values in items:
        slots = max(int(tag["n_items"]), len(values))
        vr = str(tag["vr"]).encode("ascii")[:3]
        out += struct.pack(
            "<64si4s3i",
            name.encode("latin-1")[:63],
            int(tag["vm"]),
            vr,
            int(tag["syngodt"]),
            slots,
            int(tag["last3"]),
        )
        for index in range(slots):
            data = values[index].encode("latin-1") + b"\x00" if index < len(values) else b""
            length = len(data)
            out += struct.pack("<4i", length, length, _CHECK if data else _EMPTY_SLOT, length)
            out += data + b"\x00" * (-length % 4)
    return bytes(out)
