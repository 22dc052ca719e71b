"""``diff``: what de-identification changed, element by element, across a batch."""

from dicomveil.qc.diff.model import (
    ChangeKind,
    DiffReport,
    ElementChange,
    FilePair,
    MatchMethod,
    Step,
    StepKind,
    StepPath,
    SummaryRow,
    diff,
)

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
    "diff",
]
