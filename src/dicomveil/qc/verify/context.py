"""What the checks share: the context every worker holds, what one output file contributes to
the whole-set checks, and the state of one file's check that each check adds to."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dicomveil.qc.verify.elements import _Data, _Node, _spans
from dicomveil.qc.verify.expectations import _Rules
from dicomveil.qc.verify.needles import _Needles
from dicomveil.qc.verify.report import Category, Finding, IodCheck, RiskFlag, RiskKind, _finding


@dataclass(frozen=True)
class _Context:
    root: Path
    rules: _Rules
    needles: _Needles
    original_uids: frozenset[str]
    map_new_to_old: Mapping[str, str]
    inputs_by_sop: Mapping[str, str]
    replaced: Mapping[str, Mapping[tuple[int, ...], tuple[str, str]]]
    against: bool
    has_map: bool
    show_values: bool
    dciodvfy: str | None
    iod: IodCheck
    # Without a UID map: pixel data digest -> the one input that has it (see _match).
    inputs_by_pixels: Mapping[str, str] = field(default_factory=dict)

    def redact(self, text: str, hits: list[tuple[int, bytes]] | None = None) -> str:
        """``text`` with identifying parts masked (unless values may be shown); ``hits``:
        the needles found in it, when known."""
        if self.show_values or self.needles.empty:
            return text
        data = os.fsencode(text)
        if hits is None:
            hits = self.needles.find(data.lower())
        spans = [(at, at + len(n)) for at, n in hits]
        if not spans:
            return text
        out = bytearray()
        last = 0
        for start, end in spans:
            if start < last:
                continue
            out += data[last:start] + b"***"
            last = end
        out += data[last:]
        return os.fsdecode(bytes(out))

    def value(self, text: str) -> str:
        return f": {text!r}" if self.show_values else ""


@dataclass
class _Outcome:
    """What one output file contributes to the whole-set checks."""

    file: str
    findings: list[Finding] = field(default_factory=list)
    flags: list[RiskFlag] = field(default_factory=list)
    sop_uid: str = ""
    directory: bool = False
    defined: set[str] = field(default_factory=set)
    references: list[tuple[str, str]] = field(default_factory=list)
    pairs: list[tuple[str, str, str]] = field(default_factory=list)
    inherited_invalid: int = 0
    matched_by_pixels: bool = False


class _FileState:
    """One output file's check in progress: what the checks collect while its elements are
    walked, and the findings and flags (with the path masked unless values may be shown)."""

    def __init__(self, ctx: _Context, path: Path) -> None:
        self.ctx = ctx
        self.path = path
        rel = path.relative_to(ctx.root) if path != ctx.root else Path(path.name)
        self.rel = rel.as_posix()
        # Needles in the file's path, searched once: for the leak check and for masking.
        needles = ctx.needles
        self.name_hits = [] if needles.empty else needles.find(os.fsencode(self.rel).lower())
        self.outcome = _Outcome(ctx.redact(self.rel, self.name_hits))
        # What was walked (each dataset with the offset its elements' offsets are relative
        # to), and where each element's value lies: found when a leak needs a place.
        self.walked: list[tuple[_Data, int]] = []
        self._spans: list[tuple[int, int, _Node]] | None = None
        # For the original check: node, why, letters, a rule's literal replacement value.
        self.pending: list[tuple[_Node, str, frozenset[str], str | None]] = []
        # (node, joined value, category, message): reported unless the input had it too
        self.invalid: list[tuple[_Node, str, Category, str]] = []
        self.uids: list[tuple[_Node, list[str]]] = []
        self.original_uid_paths: set[str] = set()
        self.blocks: dict[str, int] = {}
        self.signature = hashlib.blake2b(digest_size=16)  # the structure, for dciodvfy
        self.original: Mapping[tuple[int, ...], tuple[str, str]] = {}  # of the matched input
        self.shift: int | None = None  # days, once known

    @property
    def spans(self) -> list[tuple[int, int, _Node]]:
        """(start, end, node) of every element value the walk saw: only the leak search
        needs them, and only where it finds something, so they are not kept on the way."""
        if self._spans is None:
            self._spans = []
            with contextlib.suppress(Exception):  # as far as the walk could read
                for data, base in self.walked:
                    _spans(data, base, self._spans)
        return self._spans

    def add(self, path: str, category: Category, message: str) -> None:
        self.outcome.findings.append(
            _finding(self.outcome.file, self.ctx.redact(path), category, message)
        )

    def flag(self, path: str, kind: RiskKind, message: str) -> None:
        self.outcome.flags.append(RiskFlag(self.outcome.file, self.ctx.redact(path), kind, message))
