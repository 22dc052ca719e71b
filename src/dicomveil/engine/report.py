"""What the engine reports about each element it decided on: for ``explain`` and the audit
trail. A report holds where the element is, what was done and why; never a value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ElementReport:
    """One decision of the engine, for ``explain`` and the audit trail. Holds no values.

    Attributes
    ----------
    path : str
        The sequence items above the element (``A[0]>B[1]``), '' at the top level.
    tag : int
        The element's tag.
    keyword : str
        Its keyword (``private`` or ``unknown`` when the dictionary has none).
    vr : str
        The VR acted on.
    action : str
        What was done: X, Z, D, K, U, C, ``replace`` or ``shift``.
    source : str
        Why: the table row, option, rule or engine reason behind the decision.
    """

    path: str
    tag: int
    keyword: str
    vr: str
    action: str
    source: str

    @property
    def tag_text(self) -> str:
        """The tag as ``(GGGG,EEEE)``."""
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"
