"""``diff``: what de-identification changed, element by element, across a batch.

Modules: :mod:`~dicomveil.qc.diff.steps` (kinds of change, match methods, element paths),
:mod:`~dicomveil.qc.diff.model` (the report, and its plain text),
:mod:`~dicomveil.qc.diff.matching` (finding and pairing the files),
:mod:`~dicomveil.qc.diff.compare` (:func:`diff`, and comparing one pair),
:mod:`~dicomveil.qc.diff.html` (the HTML page, from a template; it depends on the model, not
the reverse).
"""

from dicomveil.qc.diff.compare import compare_pair, diff
from dicomveil.qc.diff.html import render_html
from dicomveil.qc.diff.model import DiffReport, ElementChange, FilePair, SummaryRow
from dicomveil.qc.diff.steps import ChangeKind, MatchMethod, Step, StepKind, StepPath

__all__ = [
    "ChangeKind",
    "DiffReport",
    "ElementChange",
    "FilePair",
    "MatchMethod",
    "Step",
    "StepKind",
    "StepPath",
    "SummaryRow",
    "compare_pair",
    "diff",
    "render_html",
]
