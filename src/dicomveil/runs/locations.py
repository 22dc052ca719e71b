"""Where a run reads and writes: the output folder is not inside an input nor an input
inside it, the maps are not inside the output (:func:`check_locations`), and inputs that
overlap are walked once (:func:`outermost`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dicomveil.errors import DicomveilError


def check_locations(inputs: Sequence[Path], output: Path, map_dir: Path | None) -> None:
    """Refuse an output inside an input (it would be read again) and maps inside the output."""
    out = output.resolve()
    for root in inputs:
        base = root.resolve()
        if base == out or (root.is_dir() and base in out.parents):
            raise DicomveilError(f"the output folder {output} is inside the input {root}")
        if out in base.parents and root.is_dir():
            raise DicomveilError(f"the input {root} is inside the output folder {output}")
    if map_dir is not None:
        maps = map_dir.resolve()
        if maps == out or out in maps.parents:
            raise DicomveilError("--map-dir must be outside the shareable output folder")


def outermost(roots: Sequence[Path]) -> list[Path]:
    """The inputs but those another one already holds (the same file or folder again, a
    folder or file inside a folder given): every file is reached, and counted, once.

    Parameters
    ----------
    roots : sequence of Path
        The inputs, in order.

    Returns
    -------
    list of Path
        The inputs to walk, in order.
    """
    given = [(root, root.resolve()) for root in roots]
    folders = [resolved for root, resolved in given if root.is_dir()]
    seen: set[Path] = set()
    kept: list[Path] = []
    for root, resolved in given:
        if resolved in seen or any(folder in resolved.parents for folder in folders):
            continue
        seen.add(resolved)
        kept.append(root)
    return kept
