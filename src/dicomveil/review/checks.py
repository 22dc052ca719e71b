"""One file checked for the reviewer: what changed (``diff``'s comparison of the original and
the de-identified file, an independent reading of both) and why (the engine's decisions on
the original under the run's profile), joined element by element.

The verdict is the lab's "nothing else changed": every element the comparison finds
changed has a decision of the profile behind it. A change no rule explains is named. When
the run's profile cannot be rebuilt here (a profile file that moved or changed: its digest
differs from the run's), the changes are shown without rules and the verdict says so.

The engine runs with a random key: its decisions (action and rule) do not depend on the
key, only the values it writes do, and those are read from the written file.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword

from dicomveil.engine.core import Engine
from dicomveil.identity.keys import Key
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import read_source
from dicomveil.profiles import Profile
from dicomveil.qc.audit import RunRecord
from dicomveil.qc.diff import ChangeKind, ElementChange, StepKind, compare_pair

__all__ = ["ChangeRow", "FileCheck", "check_file", "run_profile"]


@dataclass(frozen=True)
class ChangeRow:
    """One changed element: where, what the comparison found, and the rule behind it."""

    path: str
    keyword: str
    change: str
    detail: str
    action: str  # the engine's action (X, Z, D, U, replace, shift...), "" when none
    source: str  # the rule, option or table row; "" when none
    before: str  # values: shown only to a reviewer who asks
    after: str

    @property
    def explained(self) -> bool:
        """Whether a decision of the profile that changes the element is behind it."""
        return bool(self.action)


@dataclass(frozen=True)
class FileCheck:
    """A file checked (see the module)."""

    rows: tuple[ChangeRow, ...]
    kept: int  # elements found unchanged
    verdict: str
    ok: bool | None  # True: nothing else changed; False: something did; None: cannot tell
    pixels_changed: bool


_FILE_META: Final = 0x0002
_LEAVES_NOTHING: Final = frozenset({"X"})  # the element is not in the output
_LEAVES_EMPTY: Final = frozenset({"Z"})  # the element is in the output, empty
_EMPTY_KINDS: Final = frozenset({ChangeKind.EMPTIED, ChangeKind.REMOVED})
# What the engine adds to every file it writes (PS3.15 E.1.1 and E.3.6): PatientIdentity-
# Removed, DeidentificationMethod (and its code sequence), LongitudinalTemporalInformation-
# Modified.
_MARKERS: Final = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})


@cache
def run_profile(name: str, options: tuple[str, ...], digest: str, source: str) -> Profile | None:
    """The run's profile rebuilt (a preset by name, or the profile file it was read from),
    when its digest is the run's; else None.

    Parameters
    ----------
    name : str
        The run's profile name (``ps3.15-basic+clean-descriptors``).
    options : tuple of str
        The run's options.
    digest : str
        The run's profile digest.
    source : str
        Where the profile came from (a ``.toml`` path for a profile file), or "".

    Returns
    -------
    Profile or None
        The profile, or None when it cannot be rebuilt as it was.
    """
    candidates: list[str | Path] = [name.partition("+")[0]]
    if source.endswith(".toml"):
        candidates.append(Path(source))
    for candidate in candidates:
        try:
            base = (
                Profile.from_file(candidate)
                if isinstance(candidate, Path)
                else Profile.named(candidate)
            )
            profile = base.with_options(options)
        except Exception:  # noqa: S112 - not a preset, not readable, not valid any more
            continue
        if profile.digest == digest:
            return profile
    return None


def _profile_of(run: RunRecord) -> Profile | None:
    options = run.options.get("options", [])
    source = run.options.get("profile_source") or ""
    return run_profile(
        run.profile_name,
        tuple(str(o) for o in options) if isinstance(options, list) else (),
        run.profile_digest,
        str(source),
    )


_CACHE: OrderedDict[tuple[str, str, float, float], FileCheck] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE: Final = 512


def check_file(run: RunRecord, original: Path | None, output: Path) -> FileCheck:
    """Compare a written file with its original and explain each change.

    Parameters
    ----------
    run : RunRecord
        The run that wrote it (its profile and options).
    original : pathlib.Path or None
        The original file (None: not found; then nothing can be compared).
    output : pathlib.Path
        The written file.

    Returns
    -------
    FileCheck
        The changes and the verdict (cached while neither file changes).
    """
    if original is None:
        return FileCheck((), 0, "cannot tell: the original file is not available here", None, False)
    key = (str(original), str(output), _mtime(original), _mtime(output))
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
    try:
        checked = _check(run, original, output)
    except Exception as exc:  # a file that cannot be read: said, never a traceback
        checked = FileCheck(
            (), 0, f"cannot tell: {type(exc).__name__} reading the files", None, False
        )
    with _CACHE_LOCK:
        _CACHE[key] = checked
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return checked


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _check(run: RunRecord, original: Path, output: Path) -> FileCheck:
    pair = compare_pair(original, output)
    profile = _profile_of(run)
    cleans_pixels = "clean-pixel-data" in (run.options.get("options") or [])
    # clean-pixel-data checked the frames (and set BurnedInAnnotation to NO) before the
    # engine ran: the written file says so.
    cleaned = cleans_pixels and _burned_in(output) == "NO" and _burned_in(original) != "NO"
    decisions = _decisions(profile, original, cleaned) if profile is not None else None
    rows: list[ChangeRow] = []
    kept = 0
    pixels_changed = False
    for change in pair.changes:
        if change.change is ChangeKind.KEPT:
            kept += 1
            continue
        action, source = "", ""
        first = change.steps[0] if change.steps else None
        if first is not None and first.group == 0x7FE0 and len(change.steps) == 1:
            pixels_changed = True
            if cleans_pixels:
                action, source = "clean", "option clean-pixel-data: burned-in text painted over"
        elif cleans_pixels and _change_key(change) == ((0x0028, 0x0301),):
            action, source = "clean", "option clean-pixel-data: BurnedInAnnotation set to NO"
        elif first is not None and first.group == _FILE_META:
            action, source = "meta", "file meta information: written anew for the output"
        elif first is not None and (first.group << 16 | first.element) in _MARKERS:
            action, source = "record", "PS3.15 E.1.1: the de-identification recorded in the file"
        elif decisions is not None:
            action, source = decisions.get(_change_key(change), ("", ""))
            if action == "K":  # kept by the profile, yet changed
                action, source = "", f"kept by the profile ({source}), yet changed"
            elif action in _LEAVES_NOTHING and change.change is not ChangeKind.REMOVED:
                # what the profile removes is there, with a value: altered after the run
                action, source = "", f"removed by the profile ({source}), yet present"
            elif action in _LEAVES_EMPTY and change.change not in _EMPTY_KINDS:
                action, source = "", f"emptied by the profile ({source}), yet holds a value"
        rows.append(
            ChangeRow(
                change.path,
                change.keyword,
                change.change.value,
                change.detail,
                action,
                source,
                change.before,
                change.after,
            )
        )
    rows = _kept_sequences_walked(rows)
    if profile is None:
        why = "the run's profile cannot be rebuilt here (its digest differs)"
    elif decisions is None:
        why = "the profile withholds the original now"
    else:
        why = ""
    return FileCheck(tuple(rows), kept, *_verdict(rows, why), pixels_changed)


def _kept_sequences_walked(rows: list[ChangeRow]) -> list[ChangeRow]:
    """A sequence the profile keeps, changed only where its items' elements changed (each a
    row of its own, checked with its own decision): explained by them. It was named a
    change no rule explains (an RT Plan's beam and dose sequences, whose UIDs and
    descriptions the table changes at every depth)."""
    out = []
    for row in rows:
        nested = [r for r in rows if r.path.startswith(row.path + "[")]
        if not row.explained and row.source.startswith("kept by the profile") and nested:
            row = ChangeRow(
                row.path, row.keyword, row.change, row.detail, "K",
                "kept by the profile; its items' changes are listed, each with its rule",
                row.before, row.after,
            )  # fmt: skip
        out.append(row)
    return out


def _burned_in(path: Path) -> str:
    ds = dcmread(path, stop_before_pixels=True, specific_tags=[0x00280301])
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper()


def _verdict(rows: list[ChangeRow], unknown: str) -> tuple[str, bool | None]:
    if unknown:
        return (f"cannot tell: {unknown}", None)
    unexplained = [r for r in rows if not r.explained]
    if not unexplained:
        return (f"nothing else changed: {len(rows)} change(s), each decided by the profile", True)
    named = ", ".join(r.keyword or r.path for r in unexplained[:5])
    more = f" and {len(unexplained) - 5} more" if len(unexplained) > 5 else ""
    return (f"{len(unexplained)} change(s) no rule explains: {named}{more}", False)


def _decisions(
    profile: Profile, original: Path, cleaned: bool
) -> dict[tuple[object, ...], tuple[str, str]] | None:
    """The engine's decisions on the original, by element (see :func:`_change_key`); None
    when the engine withholds it now (the profile or the file changed since the run)."""
    engine = Engine(profile.compile(), Pseudonymizer(Key(os.urandom(32))))
    source = read_source(original)
    if cleaned:
        # What clean-pixel-data did before the engine ran (painting the text over is not
        # done again here: the comparison of the frames shows it).
        source.dataset.BurnedInAnnotation = "NO"
    result = engine.deidentify(source.dataset, explain=True, has_pixel_data=source.has_pixel_data)
    if result.dataset is None:
        return None
    found: dict[tuple[object, ...], tuple[str, str]] = {}
    for report in result.reports:
        steps = [_segment(part.partition("[")[0]) for part in report.path.split(">") if part]
        found[(*steps, _tag_key(report.tag))] = (report.action, report.source)
    return found


def _segment(name: str) -> object:
    if name.startswith("("):
        group, element = name.strip("()").split(",")
        return _tag_key(int(group, 16) << 16 | int(element, 16))
    tag = tag_for_keyword(name)
    return _tag_key(tag) if tag is not None else name


def _tag_key(tag: int) -> object:
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1:
        if 0x0010 <= element <= 0x00FF:
            return (group, "creator")
        if element > 0x00FF:
            return (group, "private", element & 0xFF)
    return (group, element)


def _change_key(change: ElementChange) -> tuple[object, ...]:
    key: list[object] = []
    for step in change.steps:
        if step.kind is StepKind.PRIVATE:
            key.append((step.group, "private", step.element))
        elif step.kind is StepKind.CREATOR:
            key.append((step.group, "creator"))
        else:
            key.append((step.group, step.element))
    return tuple(key)
