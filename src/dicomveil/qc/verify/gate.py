"""The release gate (``run --verify``): each written file checked by the verifier, in process,
against its own input, before it counts as written.

:class:`ReleaseGate` builds, for one output file, the context :func:`verify` builds for a
folder: the identifying values of the file's input (read by verify's own reader, never the
engine's), the run's UID map for that file, the profile's expectations. It runs the
per-file checks (conformance, leak, reference, validity; not dciodvfy, which needs a
program) and answers with the findings that stop a file: any leak, an original UID, an
original value kept where the profile replaces it, an element present that the profile
removes, an invalid value, an unreadable file. Their reason names the check, the category
and the element, never the value.

A gate is a small picklable object: the batch sends it to its worker processes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dicomveil.profiles import Profile
from dicomveil.qc.verify.context import _Context
from dicomveil.qc.verify.elements import _well_known
from dicomveil.qc.verify.expectations import _Rules
from dicomveil.qc.verify.files import _FileCheck
from dicomveil.qc.verify.inputs import _input_facts
from dicomveil.qc.verify.needles import _build_needles
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

    @cached_property
    def rules(self) -> _Rules:
        """Verify's reading of the profile, worked out once per process."""
        return _Rules.of(self.profile)

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
        needles: dict[str, Category] = dict(facts.needles) if facts is not None else {}
        kept = set(facts.kept) if facts is not None else set()
        if rules.replace_uids:
            for old in uid_map:
                if not _well_known(old) and "." in old:
                    needles.setdefault(old, Category.UID)
        original_uids = {u for u, c in needles.items() if c is Category.UID}
        ctx = _Context(
            root=root,
            rules=rules,
            needles=_build_needles(needles, kept | _token_words(self.profile)),
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
