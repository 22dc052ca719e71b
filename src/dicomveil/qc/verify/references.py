"""The reference check: UID references resolve within the output set, no original instance
UID remains, one original UID became one new UID everywhere and as ``uids.csv`` says, and each
file matches an input and is there once."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from dicomveil.qc.verify.context import _Context, _FileState, _Outcome
from dicomveil.qc.verify.elements import (
    _SOP_INSTANCE_UID,
    _Data,
    _is_instance_uid_element,
    _Node,
    _Role,
    _text,
    _uid_role,
    _well_known,
)
from dicomveil.qc.verify.expectations import _Expect
from dicomveil.qc.verify.report import Category, Finding, _finding
from dicomveil.qc.verify.sources import _pixel_digest

_UID_TEXT: Final = re.compile(r"^[0-9]+(\.[0-9]+){2,}$")


def _uid_element(check: _FileState, node: _Node, values: list[str], expect: _Expect) -> None:
    uids = [v for v in values if v and not _well_known(v)]
    if node.vr == "UN":
        uids = [u for u in uids if _UID_TEXT.match(u)]
    if not uids:
        return
    instance = node.private or _is_instance_uid_element(node.keyword)
    if not instance:
        return
    check.uids.append((node, values))
    original = [u for u in uids if u in check.ctx.original_uids]
    kept_on_purpose = expect.explicit and not node.private
    if original and not kept_on_purpose:
        check.original_uid_paths.add(node.path)
        check.add(
            node.path,
            Category.ORIGINAL_UID,
            "an original instance UID remains" + check.ctx.value(original[0]),
        )
    role = _uid_role(node)
    if role is _Role.DEFINED:
        if node.tag == _SOP_INSTANCE_UID and node.depth == 0:
            check.outcome.sop_uid = uids[0]
        check.outcome.defined.update(uids)
    elif role is _Role.REFERENCE:
        check.outcome.references.extend((u, node.path) for u in uids if u not in original)


def _match(check: _FileState, ds: _Data) -> str | None:
    """The input this output came from, if any."""
    ctx = check.ctx
    if check.outcome.directory:
        return None
    sop = check.outcome.sop_uid or _text(ds, _SOP_INSTANCE_UID)
    check.outcome.sop_uid = sop
    if not sop:
        check.add("SOPInstanceUID", Category.INVALID_VALUE, "no SOP Instance UID")
        return None
    kept = (
        not ctx.rules.replace_uids
        or ctx.rules.public(_SOP_INSTANCE_UID).explicit
        or _well_known(sop)  # a well-known SOP instance (PS3.6 Annex A): never replaced
    )
    old = ctx.map_new_to_old.get(sop)
    if old is not None:
        source = ctx.inputs_by_sop.get(old)
    else:
        source = ctx.inputs_by_sop.get(sop) if kept else None
    if source is not None:
        return source
    if ctx.against and (ctx.has_map or kept):
        where = "the UID map or the inputs" if ctx.has_map else "the inputs"
        message = f"no input matches this file: its SOP Instance UID is not in {where}"
    elif ctx.has_map and not kept and old is None:
        message = "its SOP Instance UID is not in the UID map: not an output of that run"
    else:  # UIDs replaced and no map: matched by pixel data, if any input shares it
        if not ctx.inputs_by_pixels:
            return None
        source = ctx.inputs_by_pixels.get(_pixel_digest(str(check.path)) or "")
        check.outcome.matched_by_pixels = source is not None
        return source
    check.add("SOPInstanceUID", Category.UNMATCHED_FILE, message)
    return None


def _uid_pairs(check: _FileState) -> None:
    """Against the matched input: (original UID, new UID) of each instance UID element."""
    original = check.original
    for node, values in check.uids:
        before = original.get(node.key)
        if before is None or before[0] != "UI" or node.key[0] >> 16 == 0x0002:
            continue
        for old, new in zip(before[1].split("\\"), values, strict=False):
            if old and not _well_known(old):
                check.outcome.pairs.append((old, new, node.path))


@dataclass
class _UidMap:
    old_to_new: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def _read_uid_map(folder: Path) -> _UidMap:
    """``uids.csv`` (``id_old,id_new``): raises OSError or ValueError when unusable."""
    path = folder / "uids.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip() for c in rows[0][:2]] != ["id_old", "id_new"]:
        raise ValueError("uids.csv has no id_old,id_new header")
    found = _UidMap()
    new_to_old: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < 2:
            continue
        old, new = row[0].strip(), row[1].strip()
        earlier = found.old_to_new.get(old)
        if earlier is not None and earlier != new:
            found.findings.append(
                _finding(
                    "uids.csv",
                    f"row {number}",
                    Category.UID_MAP,
                    "an original UID has two new UIDs in the map",
                )
            )
            continue
        if new_to_old.get(new, old) != old:
            found.findings.append(
                _finding(
                    "uids.csv",
                    f"row {number}",
                    Category.UID_MAP,
                    "two original UIDs share one new UID in the map",
                )
            )
        found.old_to_new[old] = new
        new_to_old[new] = old
    return found


def _whole_set(
    ctx: _Context, outcomes: list[_Outcome], uid_map: _UidMap, input_defined: set[str]
) -> tuple[list[Finding], int]:
    """Checks across files (duplicates, references, the UID map), and how many references
    were already unresolved in the inputs."""
    found: list[Finding] = []
    inherited = 0
    defined: set[str] = set()
    origin = {new: old for old, new in uid_map.old_to_new.items()}
    for outcome in outcomes:
        defined.update(outcome.defined)
        origin.update((new, old) for old, new, _path in outcome.pairs)
    owners: dict[str, str] = {}
    for outcome in outcomes:
        sop = outcome.sop_uid
        if sop and not outcome.directory:
            first = owners.setdefault(sop, outcome.file)
            if first != outcome.file:
                message = f"the same SOP Instance UID as {first}"
                found.append(
                    _finding(outcome.file, "SOPInstanceUID", Category.DUPLICATE_INSTANCE, message)
                )
        for uid, path in outcome.references:
            if uid in defined or uid in ctx.original_uids:
                continue
            original = origin.get(uid)
            if ctx.against and original is not None and original not in input_defined:
                inherited += 1  # the input's reference pointed outside the set too
                continue
            message = "refers to an instance that is not in the output" + ctx.value(uid)
            found.append(_finding(outcome.file, path, Category.DANGLING_REFERENCE, message))
    news: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    olds: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    for outcome in outcomes:
        for old, new, path in outcome.pairs:
            news[old].setdefault(new, (outcome.file, path))
            olds[new].setdefault(old, (outcome.file, path))
            mapped = uid_map.old_to_new.get(old)
            if mapped is not None and mapped != new:
                message = "the UID differs from the one uids.csv gives for its original"
                found.append(_finding(outcome.file, path, Category.UID_MAP, message))
    for groups, message in (
        (news, "one original UID became different UIDs in the output"),
        (olds, "different original UIDs became one UID in the output"),
    ):
        for places in groups.values():
            for file, path in list(places.values())[1:]:
                found.append(_finding(file, path, Category.UID_MAP, message))
    return found, inherited
