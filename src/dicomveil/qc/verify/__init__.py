"""Verify de-identified output as a stranger would: independently of the engine.

:func:`verify` reads every file under an output folder and reports what a reviewer must know
before the data leave the site. It never asks the engine what it did: it derives what the
profile demands from the profile's data (base, options, rules) and the tables of
:mod:`dicomveil.standard.tables` (PS3.15 Table E.1-1, Table E.3.10-1), reads the files
itself (a strict reader of its own for well-formed files, pydicom's for the rest),
searches the raw bytes itself, and compares with the originals when they are given. A bug
in the engine therefore shows up here as a finding.

The checks (:class:`Check`):

- **conformance**: no element present that the profile removes, no value in what it empties,
  and (with ``against``) no original value in what it replaces, at any depth; private
  elements only where the safe-private list, an option or a rule keeps them; no private
  creator without elements; a zeroed preamble; no AE titles or private data in the file meta.
- **leak**: every identifying value of the originals (names in their usual renderings, IDs,
  dates, times, addresses, phone numbers, institution and device names, instance UIDs), and
  the original UIDs of ``uids.csv``, searched case-insensitively in the raw bytes of every
  output file (preamble, file meta, private elements, overlays, encapsulated documents and
  their compressed PDF streams; not pixel data, whose random bytes would match by chance and
  whose burned-in text no byte search can find) and in the output's file and folder names.
- **reference**: every UID reference resolves to an instance of the output set or is a
  well-known UID; no original instance UID remains; one original UID became one new UID
  everywhere, and as the map says; each file matches an input and is there once.
- **validity**: every file has the DICM prefix and parses; every value is legal for its VR
  and character set; ``dciodvfy`` (where installed) finds no IOD error that the matched input
  did not already have (run once per distinct structure by default: see :class:`IodCheck`).

With ``against``, what the inputs already had is not the de-identifier's doing: invalid
values, IOD errors and references that point outside the set are not reported when the
matched input had them too. A DICOMDIR's records may hold placeholders where the profile
empties a value (the records need keys); the leak search still covers them.

Risk flags (:class:`RiskFlag`) are reported even where the profile allows what they flag:
BurnedInAnnotation not NO, kept free text, kept private elements, encapsulated documents,
overlays and SR content trees.

No message holds a value read from a file unless ``show_values`` is set: findings name the
file (with identifying parts of its name masked), the element and the category.

Verify runs at least as fast as de-identification of the same files
(``benchmarks/bench_verify.py``), without checking less: it reads what it checks and no more
(an output's header and what follows its pixel data, an input's header without what the input
walk passes over; :mod:`~dicomveil.qc.verify.reading`), walks an input as it reads it
(:class:`~dicomveil.qc.verify.inputs._InputWalk`), remembers what comes back file after file
(what an input value contributes, output values found valid, the profile's decision per tag),
looks needles up by the runs of letters and digits of the bytes searched
(:class:`~dicomveil.qc.verify.needles._Needles`), and shares the files out among forked
processes, the calling one included (:mod:`~dicomveil.qc.verify.runner`).

Modules: :mod:`~dicomveil.qc.verify.report` (findings, risk flags, the report),
:mod:`~dicomveil.qc.verify.expectations` (what the profile demands),
:mod:`~dicomveil.qc.verify.reading` (reading a file), :mod:`~dicomveil.qc.verify.elements`
(walking a dataset), :mod:`~dicomveil.qc.verify.sources` (where the originals are, reading
them), :mod:`~dicomveil.qc.verify.contributions` (what an original's element gives the checks),
:mod:`~dicomveil.qc.verify.inputs` (an original's facts, walked as it is read) and
:mod:`~dicomveil.qc.verify.needles` (identifying values and their search),
:mod:`~dicomveil.qc.verify.files` (one output file) and its checks
:mod:`~dicomveil.qc.verify.conformance`, :mod:`~dicomveil.qc.verify.leaks`,
:mod:`~dicomveil.qc.verify.references`, :mod:`~dicomveil.qc.verify.validity` and
:mod:`~dicomveil.qc.verify.risks`, :mod:`~dicomveil.qc.verify.runner` (workers, the whole-set checks
and :func:`verify` itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dicomveil.qc.verify.report import (
    Category,
    Check,
    Finding,
    IodCheck,
    RiskFlag,
    RiskKind,
    Verdict,
    VerifyReport,
)

if TYPE_CHECKING:
    from dicomveil.qc.verify.runner import verify


def __getattr__(name: str) -> Any:
    """:func:`verify`, loaded on first use (the command line registers ``dicomveil verify``
    with the report's types, and loads the verifier only to run it)."""
    if name == "verify":
        from dicomveil.qc.verify.runner import verify

        globals()["verify"] = verify  # found directly next time
        return verify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Category",
    "Check",
    "Finding",
    "IodCheck",
    "RiskFlag",
    "RiskKind",
    "Verdict",
    "VerifyReport",
    "verify",
]
