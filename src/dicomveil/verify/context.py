"""What the checks share: the context every worker holds, what one output file contributes to
the whole-set checks, and the state of one file's check that each check adds to."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .elements import _Node
from .expectations import _Rules
from .needles import _Needles
from .report import Category, Finding, IodCheck, RiskFlag, RiskKind, _finding


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

    def redact(self, text: str) -> str:
        """``text`` with identifying parts masked (unless values may be shown)."""
        if self.show_values or self.needles.empty:
            return text
        data = os.fsencode(text)
        lowered = data.lower()
        spans = [(at, at + len(n)) for at, n in self.needles.find(lowered)]
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


class _FileState:
    """One output file's check in progress: what the checks collect while its elements are
    walked, and the findings and flags (with the path masked unless values may be shown)."""

    def __init__(self, ctx: _Context, path: Path) -> None:
        self.ctx = ctx
        self.path = path
        rel = path.relative_to(ctx.root) if path != ctx.root else Path(path.name)
        self.rel = rel.as_posix()
        self.outcome = _Outcome(ctx.redact(self.rel))
        self.spans: list[tuple[int, int, _Node]] = []  # where each element's value lies
        self.pending: list[tuple[_Node, str, frozenset[str]]] = []  # for the original check
        # (node, joined value, category, message): reported unless the input had it too
        self.invalid: list[tuple[_Node, str, Category, str]] = []
        self.uids: list[tuple[_Node, list[str]]] = []
        self.original_uid_paths: set[str] = set()
        self.blocks: dict[str, int] = {}
        self.signature = hashlib.blake2b(digest_size=16)  # the structure, for dciodvfy
        self.original: Mapping[tuple[int, ...], tuple[str, str]] = {}  # of the matched input
        self.shift: int | None = None  # days, once known

    def add(self, path: str, category: Category, message: str) -> None:
        self.outcome.findings.append(
            _finding(self.outcome.file, self.ctx.redact(path), category, message)
        )

    def flag(self, path: str, kind: RiskKind, message: str) -> None:
        self.outcome.flags.append(RiskFlag(self.outcome.file, self.ctx.redact(path), kind, message))
