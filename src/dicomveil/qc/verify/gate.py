"""The release gate (``run --verify``): each written file checked by the verifier, in process,
against its own input and what the run has read of its patient, before it counts as written.

:class:`ReleaseGate` builds, for one output file, the context :func:`verify` builds for a
folder: the identifying values of the file's input (read by verify's own reader, never the
engine's) and of the patient's other inputs this process has checked (:class:`_Patients`:
a name or ID that one file of the patient holds is searched for in all the others), the
run's UID map for that file, the profile's expectations. It runs the
per-file checks (conformance, leak, reference, validity; not dciodvfy, which needs a
program) and answers with the findings that stop a file: any leak, an original UID, an
original value kept where the profile replaces it, an element present that the profile
removes, an invalid value, an unreadable file. Their reason names the check, the category
and the element, never the value.

A gate is a small picklable object: the batch sends it to its worker processes, each of
which then learns the patients of the files it checks. The batch hands out consecutive
files (a series, a patient's folder) in chunks, so each process meets most of a patient's
files; what another process read is not known here (the gate decides before a file counts
as written, and waiting for the whole run would hold every file back).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from dicomveil.profiles import Profile
from dicomveil.qc.verify.context import _Context
from dicomveil.qc.verify.elements import _well_known
from dicomveil.qc.verify.expectations import _Rules
from dicomveil.qc.verify.files import _FileCheck
from dicomveil.qc.verify.inputs import _input_facts, _InputFacts
from dicomveil.qc.verify.needles import _build_needles, _extend_needles, _grown, _Needles
from dicomveil.qc.verify.report import Category, Check, Finding, IodCheck
from dicomveil.qc.verify.runner import _token_words

# What stops a file: every leak, and these of the other checks.
GATED: frozenset[Category] = frozenset(
    {
        Category.ORIGINAL_UID,
        Category.ORIGINAL_KEPT,
        Category.REMOVED_PRESENT,
        Category.NOT_EMPTIED,
        Category.INVALID_VALUE,
        Category.CHARACTER_SET,
        Category.UNREADABLE,
        Category.NO_PREFIX,
    }
)


@dataclass(frozen=True)
class ReleaseGate:
    """The verifier as a gate for one profile (see the module docstring).

    Parameters
    ----------
    profile : Profile
        The profile the files were de-identified with.
    """

    profile: Profile
    patients: _Patients = field(default_factory=lambda: _Patients(), compare=False, repr=False)

    @cached_property
    def rules(self) -> _Rules:
        """Verify's reading of the profile, worked out once per process."""
        return _Rules.of(self.profile)

    @cached_property
    def tokens(self) -> frozenset[str]:
        """What a de-identifier writes whatever the input (never a needle)."""
        return frozenset(_token_words(self.profile))

    def findings(
        self, output: Path, root: Path, source: Path, uid_map: Mapping[str, str]
    ) -> list[Finding]:
        """The findings that stop ``output``.

        Parameters
        ----------
        output : pathlib.Path
            The written file.
        root : pathlib.Path
            The output folder (file names are checked relative to it).
        source : pathlib.Path
            The input it was written from.
        uid_map : Mapping of str to str
            Original UID -> new UID, as the run replaced them in this file.

        Returns
        -------
        list of Finding
            Empty when the file may pass.
        """
        rules = self.rules
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            facts = _input_facts(str(source), rules)
        patient = self.patients.learn(facts) if facts is not None and facts.patient else None
        # The file's own needles: all of them, or (when its patient's record holds the rest)
        # its UIDs and times; with the originals of the UIDs the run replaced in it.
        whole = patient is None or patient.full
        own: dict[str, Category] = {}
        if facts is not None:
            own = dict(facts.needles) if whole else _own(facts.needles)
        if rules.replace_uids:
            for old in uid_map:
                if not _well_known(old) and "." in old:
                    own.setdefault(old, Category.UID)
        search = None
        if patient is not None and not patient.full:
            kept, skip, known = patient.search(self.tokens)
            search = _extend_needles(known, own, skip)
        else:
            kept = frozenset(facts.kept) if facts is not None else frozenset()
            if patient is not None:
                kept |= patient.kept
            skip = kept | self.tokens
        if search is None:  # no patient, or a record too large to hold all
            needles = own
            if patient is not None:
                for text, category in patient.needles.items():
                    needles.setdefault(text, category)
            search = _build_needles(needles, skip)
        original_uids = {u for u, c in own.items() if c is Category.UID}
        ctx = _Context(
            root=root,
            rules=rules,
            needles=search,
            original_uids=frozenset(original_uids - kept),
            map_new_to_old={new: old for old, new in uid_map.items()},
            inputs_by_sop={facts.sop_uid: facts.source} if facts is not None else {},
            replaced={facts.source: facts.replaced} if facts is not None else {},
            against=facts is not None,
            has_map=True,
            show_values=False,
            dciodvfy=None,
            iod=IodCheck.OFF,
        )
        outcome = _FileCheck(ctx, output).run()
        return [f for f in outcome.findings if f.check is Check.LEAK or f.category in GATED]

    def __call__(
        self, output: Path, root: Path, source: Path, uid_map: Mapping[str, str]
    ) -> str | None:
        """Why ``output`` is stopped (check, category, element; never a value), or None
        when it passes (see :meth:`findings`)."""
        found = self.findings(output, root, source, uid_map)
        if not found:
            return None
        named = list(
            dict.fromkeys(
                f"{f.check.value} {f.category.value} in {f.path or 'the file'}" for f in found
            )
        )
        more = f" (and {len(named) - _SHOWN} more)" if len(named) > _SHOWN else ""
        return "; ".join(named[:_SHOWN]) + more


_SHOWN = 4  # findings named in a reason


class _Patient:
    """What the gate has read of one patient: the needles of their inputs but the UIDs and
    times (each file has its own), the texts kept on purpose, and the search of them, grown
    as needles are learned (built anew only when a text kept on purpose turns out to be one
    of the needles: the search must then leave it out). ``full`` once it holds
    :data:`_PER_PATIENT` needles or kept texts: later inputs then add no more than their own."""

    def __init__(self) -> None:
        self.needles: dict[str, Category] = {}
        self._folded: set[str] = set()  # the needles' texts, case-folded
        self._kept: set[str] = set()
        self.kept: frozenset[str] = frozenset()
        self.full = False
        self._search: tuple[frozenset[str], frozenset[str], _Needles] | None = None
        self._new: list[tuple[str, Category]] = []  # learned since the search was built
        self._skip_changed = False

    def learn(self, facts: _InputFacts) -> None:
        needles, new = self.needles, self._new
        for text, category in facts.needles.items():
            if category not in _OWN and text not in needles:
                if len(needles) >= _PER_PATIENT:
                    self.full = True
                    break
                needles[text] = category
                self._folded.add(text.casefold())
                new.append((text, category))
        added = facts.kept - self._kept
        if added:
            if len(self._kept) + len(added) > _PER_PATIENT:
                self.full = True
                return
            self._kept.update(added)
            self.kept = frozenset(self._kept)
            self._skip_changed = True
            if any(text.casefold() in self._folded for text in added):
                self._search = None  # a needle is now kept: the search is built anew

    def search(self, tokens: frozenset[str]) -> tuple[frozenset[str], frozenset[str], _Needles]:
        """The texts kept, what the search skips (them and ``tokens``), and the search
        for the patient's needles."""
        if self._search is None or self._search[0] is not tokens:
            skip = self.kept | tokens
            self._search = (tokens, skip, _build_needles(self.needles, skip))
        else:
            skip = self.kept | tokens if self._skip_changed else self._search[1]
            known = self._search[2]
            self._search = (tokens, skip, _grown(known, self._new, skip) if self._new else known)
        self._new.clear()
        self._skip_changed = False
        return self.kept, self._search[1], self._search[2]


class _Patients:
    """What one process's gate has read of each patient (by the input's PatientID, else
    PatientName; see :class:`_Patient`). The latest :data:`_PATIENTS` patients are kept:
    memory stays flat however long the run."""

    def __init__(self) -> None:
        self._known: OrderedDict[str, _Patient] = OrderedDict()

    def learn(self, facts: _InputFacts) -> _Patient:
        """Add an input's facts to its patient's record, and return the record."""
        known = self._known.get(facts.patient)
        if known is None:
            known = self._known[facts.patient] = _Patient()
            while len(self._known) > _PATIENTS:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(facts.patient)
        known.learn(facts)
        return known

    def __getstate__(self) -> dict[str, object]:
        return {}  # a process learns its own: nothing is sent with the gate

    def __setstate__(self, state: dict[str, object]) -> None:
        self._known = OrderedDict()


def _own(needles: Mapping[str, Category]) -> dict[str, Category]:
    """The needles a patient's record does not hold: the file's UIDs and times."""
    return {t: c for t, c in needles.items() if c in _OWN}


_PATIENTS = 256  # patients a process remembers (the latest)
_PER_PATIENT = 4096  # needles (and kept texts) remembered per patient
_OWN = frozenset({Category.UID, Category.TIME})  # each file has its own: not pooled
