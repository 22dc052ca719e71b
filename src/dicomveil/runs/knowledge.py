"""A run's first pass, when the profile's free-text cleaners look for the patient's values:
every input's patient and identifying values (values only, never datasets), pooled per
patient, so that each file's texts are cleaned of what any file of its patient holds (a
relative's name in one file's history is removed from the next file's comment), and of the
institution, department and station names of the whole run.

The second pass hands the pooled values to every worker's engine
(:class:`~dicomveil.engine.Engine`'s ``patients``). Inputs that cannot be read give
nothing here: the second pass reports them.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dicomveil.cleaners.text import Identifiers
from dicomveil.io import Kind, read_scanned, read_source, sniff

if TYPE_CHECKING:
    from dicomveil.engine import Engine
    from dicomveil.runs.batch import Task

Patients = dict[str, Identifiers]
"""What every file of each patient holds, by the engine's patient key."""


class _Reader(Protocol):
    """What the first pass needs of a run's worker: its engine, and its open archive."""

    engine: Engine

    def _archive(self, path: Path) -> zipfile.ZipFile: ...


def learn(worker: _Reader, task: Task) -> tuple[str, Identifiers] | None:
    """The input's patient key and the identifying values it holds (None when it cannot be
    read, or is no input)."""
    if task.skip is not None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if task.member is None:
                return _learn_path(worker, task.path)
            with tempfile.TemporaryDirectory(prefix="dicomveil-") as folder:
                extracted = Path(folder) / "member"
                with (
                    task.open_member(worker._archive(task.path)) as src,
                    extracted.open("wb") as out,
                ):
                    shutil.copyfileobj(src, out, 1 << 20)
                return _learn_path(worker, extracted)
    except Exception:  # whatever cannot be read is reported by the second pass
        return None


def _learn_path(worker: _Reader, path: Path) -> tuple[str, Identifiers] | None:
    source = read_scanned(path)
    if source is None:
        if sniff(path) is not Kind.DICOM:
            return None
        source = read_source(path, quick=False)
    return worker.engine.patient_values(source.dataset)


def pooled(found: Iterable[tuple[str, Identifiers] | None], into: Patients) -> None:
    """Add the values found to their patients' (in place)."""
    for item in found:
        if item is not None:
            key, values = item
            known = into.get(key)
            into[key] = values if known is None else known.union(values)


_READER: _Reader | None = None


def _init(make: Callable[[], _Reader]) -> None:
    global _READER
    _READER = make()


def _learn_chunk(tasks: list[Task]) -> list[tuple[str, Identifiers] | None]:
    assert _READER is not None
    return [learn(_READER, task) for task in tasks]


def first_pass(
    make: Callable[[], _Reader], tasks: list[Task], chunks: list[list[Task]], workers: int
) -> Patients | None:
    """Every input's values pooled per patient, when the profile's cleaners look for them
    (else None); ``make`` builds a worker (in each process of a pool of ``workers``)."""
    probe = make()
    if not probe.engine.reads_patients:
        return None
    patients: Patients = {}
    if workers == 1:
        pooled((learn(probe, task) for task in tasks), patients)
    else:
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(make,)) as pool:
            for found in pool.map(_learn_chunk, chunks):
                pooled(found, patients)
    return with_run_institutions(patients)


def with_run_institutions(patients: Patients) -> Patients:
    """Each patient's values with the institution, department and station names of the
    whole run: one patient's history names the hospital another patient's files were made
    in ("transferred from Riverside")."""
    names = frozenset().union(*(values.institutions for values in patients.values()))
    if not names:
        return patients
    everywhere = Identifiers(institutions=names)
    return {key: values.union(everywhere) for key, values in patients.items()}
