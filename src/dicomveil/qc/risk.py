"""The re-identification risk of a release: k-anonymity over its quasi-identifiers.

Removing names does not make a cohort anonymous: a 97-year-old woman scanned on a rare device
on a given day may be the only one. :func:`read_release` reads the header of every file of a
de-identified release (the quick scan, no pixel data) and keeps, per subject (its de-identified
Patient ID), the values of the quasi-identifiers that remain: by default sex, age (or birth
year), size, weight, study year and month, modality, manufacturer and model, body part and
ethnic group. :func:`assess` groups the subjects into equivalence classes (the subjects whose
values are all the same) and reports:

* k, the size of the smallest class (k-anonymity; 0 for an empty release);
* how many subjects (and what share) are in classes smaller than the chosen k;
* which attribute most often makes a subject unique (dropped, the subject shares its class);
* generalisations that would reach k (ages in 5- or 10-year bands, dates to the year, size
  and weight in bands), tried greedily, each step the one that helps most; a profile applies
  them with its ``[generalize]`` table (:mod:`dicomveil.profiles.generalize`).

A subject whose files disagree (two study months) is described by all its values. Nothing in
the report is a value of a file unless asked (``show_values``): classes are counted, not
listed.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from dicomveil.io import read_scanned, read_source, regular_files
from dicomveil.profiles.generalize import Generalization, age_in_band, in_band

DEFAULT_QUASI = (
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyDate",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "EthnicGroup",
)
"""The quasi-identifiers looked at by default (PatientAge stands for the birth year where
the age is absent; StudyDate is taken to its year and month)."""

Signature = tuple[tuple[str, ...], ...]


@dataclass
class Release:
    """What :func:`read_release` found: each subject's values, per quasi-identifier.

    Attributes
    ----------
    quasi : tuple of str
        The quasi-identifiers, by keyword.
    subjects : dict
        Subject -> one set of values per quasi-identifier ("" where absent).
    files : int
        Files read.
    unreadable : int
        Files that are not DICOM or could not be read.
    """

    quasi: tuple[str, ...]
    subjects: dict[str, list[set[str]]] = field(default_factory=dict)
    files: int = 0
    unreadable: int = 0

    def add(self, subject: str, values: Sequence[str]) -> None:
        """One file's values, added to its subject's."""
        known = self.subjects.get(subject)
        if known is None:
            self.subjects[subject] = [{v} for v in values]
            return
        for found, value in zip(known, values, strict=True):
            found.add(value)


def _value(ds: Dataset, keyword: str) -> str:
    """A quasi-identifier's value as text ("" when absent); ages fall back to birth years,
    study dates are cut to year and month."""
    if keyword == "PatientAge":
        age = str(ds.get("PatientAge", "") or "").strip()
        if age:
            return age
        birth = str(ds.get("PatientBirthDate", "") or "").strip()
        return f"born {birth[:4]}" if len(birth) >= 4 else ""
    if keyword == "StudyDate":
        date = str(ds.get("StudyDate", "") or "").strip()
        return date[:6]
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return ""
    value = ds[tag].value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value if value is not None else "").strip()


def _subject(ds: Dataset, path: Path) -> str:
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID"):
        text = str(ds.get(keyword, "") or "").strip()
        if text:
            return f"{keyword}:{text}"
    return f"file:{path}"


def _read_chunk(job: tuple[list[Path], tuple[str, ...]]) -> list[tuple[str, list[str]] | None]:
    paths, quasi = job
    found: list[tuple[str, list[str]] | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            try:
                source = read_scanned(path) or read_source(path, quick=False)
                ds = source.dataset
                found.append((_subject(ds, path), [_value(ds, q) for q in quasi]))
            except Exception:  # not DICOM, damaged: counted, never a value in a message
                found.append(None)
    return found


def read_release(
    output: Path, quasi: Sequence[str] = DEFAULT_QUASI, *, workers: int = 0
) -> Release:
    """Read the quasi-identifiers of every file below ``output``.

    Parameters
    ----------
    output : pathlib.Path
        A de-identified release (a folder, or one file).
    quasi : sequence of str
        The quasi-identifiers, by keyword.
    workers : int
        Processes (0: one per core).

    Returns
    -------
    Release
        Each subject's values.
    """
    release = Release(tuple(quasi))
    paths = [p for p in regular_files(output) if not p.name.startswith(".")]
    n = workers or os.cpu_count() or 1
    size = 500
    jobs = [(paths[i : i + size], release.quasi) for i in range(0, len(paths), size)]
    if n == 1 or len(jobs) <= 1:
        results: Iterable[list[tuple[str, list[str]] | None]] = map(_read_chunk, jobs)
        _collect(release, results)
    else:
        with ProcessPoolExecutor(n) as pool:
            _collect(release, pool.map(_read_chunk, jobs))
    return release


def _collect(release: Release, chunks: Iterable[list[tuple[str, list[str]] | None]]) -> None:
    for chunk in chunks:
        for item in chunk:
            release.files += 1
            if item is None:
                release.unreadable += 1
            else:
                release.add(*item)


# --------------------------------------------------------------------------------------------
# Equivalence classes


@dataclass(frozen=True)
class Step:
    """One generalisation tried by :func:`assess`, and where it leaves the release."""

    rule: Generalization
    k: int
    below_k: int


@dataclass(frozen=True)
class RiskReport:
    """The risk of a release (see the module's description).

    Attributes
    ----------
    quasi : tuple of str
        The quasi-identifiers.
    subjects, files, unreadable : int
        What was read.
    classes : int
        Equivalence classes.
    k : int
        The smallest class (0 for an empty release).
    wanted_k : int
        The k asked for.
    below_k : int
        Subjects in classes smaller than ``wanted_k``.
    unique : int
        Subjects alone in their class.
    makes_unique : dict of str to int
        Per quasi-identifier: unique subjects that would share a class without it.
    steps : tuple of Step
        The generalisations proposed, cumulative, in order.
    reaches : Generalization or None
        The first cumulative generalisation that reaches ``wanted_k`` (None when none does).
    """

    quasi: tuple[str, ...]
    subjects: int
    files: int
    unreadable: int
    classes: int
    k: int
    wanted_k: int
    below_k: int
    unique: int
    makes_unique: Mapping[str, int]
    steps: tuple[Step, ...] = ()
    reaches: Generalization | None = None

    @property
    def share_below_k(self) -> float:
        """The share of subjects in classes smaller than ``wanted_k`` (0 when none)."""
        return self.below_k / self.subjects if self.subjects else 0.0

    @property
    def ok(self) -> bool:
        """Whether every class has at least ``wanted_k`` subjects, and there is one at
        least (a release of which nothing could be read is not ok: k would be 0)."""
        return self.subjects > 0 and self.below_k == 0

    def as_dict(self) -> dict[str, object]:
        """For ``--json`` and the audit trail (no values)."""
        return {
            "quasi_identifiers": list(self.quasi),
            "files": self.files,
            "unreadable": self.unreadable,
            "subjects": self.subjects,
            "classes": self.classes,
            "k": self.k,
            "wanted_k": self.wanted_k,
            "below_k": self.below_k,
            "share_below_k": round(self.share_below_k, 4),
            "unique": self.unique,
            "makes_unique": dict(self.makes_unique),
            "steps": [
                {"generalize": s.rule.describe(), "k": s.k, "below_k": s.below_k}
                for s in self.steps
            ],
            "reaches_k_with": None if self.reaches is None else self.reaches.describe(),
        }


def _generalized(quasi: Sequence[str], rule: Generalization) -> list[Callable[[str], str]]:
    def keep(value: str) -> str:
        return value

    def age(value: str) -> str:
        if value.startswith("born "):
            year = value[5:]
            if year.isdigit() and rule.age_band:
                return f"born {int(year) // rule.age_band * rule.age_band}"
            return value
        return age_in_band(value, rule.age_band) if rule.age_band else value

    functions: dict[str, Callable[[str], str]] = {
        "PatientAge": age if rule.age_band else keep,
        "StudyDate": (lambda v: v[:4]) if rule.dates_to_year else keep,
        "PatientSize": (lambda v: in_band(v, (rule.size_band_cm or 0) / 100))
        if rule.size_band_cm
        else keep,
        "PatientWeight": (lambda v: in_band(v, rule.weight_band_kg or 0))
        if rule.weight_band_kg
        else keep,
    }
    return [functions.get(q, keep) for q in quasi]


def _signatures(release: Release, rule: Generalization) -> dict[str, Signature]:
    generalized = with_rule(release, rule)
    return {
        subject: tuple(tuple(sorted(values)) for values in sets)
        for subject, sets in generalized.subjects.items()
    }


def _classes(signatures: Mapping[str, Signature]) -> Counter[Signature]:
    return Counter(signatures.values())


def _measure(release: Release, rule: Generalization, k: int) -> tuple[int, int]:
    sizes = _classes(_signatures(release, rule))
    smallest = min(sizes.values(), default=0)
    below = sum(n for n in sizes.values() if n < k)
    return smallest, below


_CANDIDATES = (
    Generalization(age_band=5),
    Generalization(age_band=10),
    Generalization(dates_to_year=True),
    Generalization(size_band_cm=10),
    Generalization(size_band_cm=20),
    Generalization(weight_band_kg=10),
    Generalization(weight_band_kg=20),
)


def _combine(a: Generalization, b: Generalization) -> Generalization:
    return Generalization(
        age_band=max(a.age_band or 0, b.age_band or 0) or None,
        dates_to_year=a.dates_to_year or b.dates_to_year,
        size_band_cm=max(a.size_band_cm or 0, b.size_band_cm or 0) or None,
        weight_band_kg=max(a.weight_band_kg or 0, b.weight_band_kg or 0) or None,
    )


def assess(release: Release, k: int = 5) -> RiskReport:
    """The release's equivalence classes, k, and the generalisations that would reach ``k``.

    Parameters
    ----------
    release : Release
        What :func:`read_release` found.
    k : int
        The smallest class wanted (at least 1).

    Returns
    -------
    RiskReport
        The report.
    """
    k = max(1, k)
    none = Generalization()
    signatures = _signatures(release, none)
    sizes = _classes(signatures)
    unique_subjects = [s for s, sig in signatures.items() if sizes[sig] == 1]
    makes_unique: Counter[str] = Counter()
    for index, keyword in enumerate(release.quasi):
        without = Counter(sig[:index] + sig[index + 1 :] for sig in signatures.values())
        for subject in unique_subjects:
            sig = signatures[subject]
            if without[sig[:index] + sig[index + 1 :]] > 1:
                makes_unique[keyword] += 1
    smallest, below = _measure(release, none, k)
    steps: list[Step] = []
    current, reaches = none, None
    if below and release.subjects:
        while True:
            tried = dict.fromkeys(_combine(current, c) for c in _CANDIDATES)  # in list order
            options = [(_measure(release, rule, k), rule) for rule in tried if rule != current]
            if not options:
                break
            # the fewest subjects below k; on a tie the lightest generalisation (list order)
            (step_k, step_below), best = min(options, key=lambda o: o[0][1])
            if step_below >= (steps[-1].below_k if steps else below):
                break
            current = best
            steps.append(Step(best, step_k, step_below))
            if step_below == 0:
                reaches = best
                break
    return RiskReport(
        quasi=release.quasi,
        subjects=len(release.subjects),
        files=release.files,
        unreadable=release.unreadable,
        classes=len(sizes),
        k=smallest,
        wanted_k=k,
        below_k=below,
        unique=len(unique_subjects),
        makes_unique=dict(makes_unique.most_common()),
        steps=tuple(steps),
        reaches=reaches if below else none,
    )


def with_rule(release: Release, rule: Generalization) -> Release:
    """The release as it would be with ``rule`` applied (for tests and ``--try``)."""
    maps = _generalized(release.quasi, rule)
    subjects = {
        s: [{f(v) for v in values} for f, values in zip(maps, sets, strict=True)]
        for s, sets in release.subjects.items()
    }
    return replace(release, subjects=subjects)
