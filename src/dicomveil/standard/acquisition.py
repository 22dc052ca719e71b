"""Vendor knowledge for ``retain-acquisition-parameters``: the private elements neuroimaging
converters read, and what of the Siemens CSA headers and Phoenix protocol may be kept.

The data is ``data/acquisition.toml`` (its comments give the provenance of every entry: the
file and line of dcm2niix that reads the element); this module only loads it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib.resources import files
from typing import Any


class Handling(StrEnum):
    """What the option does with one listed private element."""

    KEEP = "keep"  # numbers and binary parameters, kept as they are
    CLEAN = "clean"  # text and containers: kept when nothing identifying is found
    WALK = "walk"  # a private sequence: kept, its items de-identified at every depth


@dataclass(frozen=True)
class PrivateParameter:
    """One private element a converter reads.

    Attributes
    ----------
    vendor : str
        ``siemens``, ``ge``, ``philips``, ``uih``.
    creators : tuple of str
        The private creators its block has (spellings seen in real files).
    group : int
        The group.
    offset : int
        The element's offset in its private block (the low byte of the element).
    vr : str
        Its VR.
    handling : Handling
        Kept, cleaned or walked.
    name : str
        dcm2niix's name for it.
    feeds : str
        What the converter uses it for.
    source : str
        Where dcm2niix defines and reads it.
    """

    vendor: str
    creators: tuple[str, ...]
    group: int
    offset: int
    vr: str
    handling: Handling
    name: str
    feeds: str
    source: str


@dataclass(frozen=True)
class CsaPolicy:
    """Which items of a Siemens CSA header are kept (see ``[csa]`` in the data file)."""

    numeric: frozenset[str]
    text: frozenset[str]
    text_pattern: re.Pattern[str]
    protocol_item: str


@dataclass(frozen=True)
class PhoenixPolicy:
    """Which lines of the Phoenix protocol's ASCCONV section are kept (``[phoenix]``)."""

    numeric_families: frozenset[str]
    numeric_keys: frozenset[str]
    text_keys: tuple[str, ...]
    text_pattern: re.Pattern[str]


@cache
def _data() -> dict[str, Any]:
    text = (files("dicomveil.standard") / "data" / "acquisition.toml").read_text("utf-8")
    return tomllib.loads(text)


@cache
def private_parameters() -> tuple[PrivateParameter, ...]:
    """Every private element of the option, as listed in ``data/acquisition.toml``."""
    entries = []
    for entry in _data()["private"]:
        tag = int(entry["tag"].strip("()").replace(",", ""), 16)
        entries.append(
            PrivateParameter(
                vendor=entry["vendor"],
                creators=tuple(entry["creators"]),
                group=tag >> 16,
                offset=tag & 0xFF,
                vr=entry["vr"],
                handling=Handling(entry["handling"]),
                name=entry["name"],
                feeds=entry["feeds"],
                source=entry["source"],
            )
        )
    return tuple(entries)


@cache
def csa_policy() -> CsaPolicy:
    """The CSA item lists (``[csa]``)."""
    csa = _data()["csa"]
    return CsaPolicy(
        numeric=frozenset(csa["numeric"]),
        text=frozenset(csa["text"]),
        text_pattern=re.compile(csa["text_pattern"]),
        protocol_item=csa["protocol_item"],
    )


@cache
def phoenix_policy() -> PhoenixPolicy:
    """The ASCCONV line lists (``[phoenix]``)."""
    phoenix = _data()["phoenix"]
    return PhoenixPolicy(
        numeric_families=frozenset(phoenix["numeric_families"]),
        numeric_keys=frozenset(phoenix["numeric_keys"]),
        text_keys=tuple(phoenix["text_keys"]),
        text_pattern=re.compile(phoenix["text_pattern"]),
    )
