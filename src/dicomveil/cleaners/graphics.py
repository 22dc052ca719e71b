"""The graphics cleaner (clean-graphics): overlay and curve texts cleaned, their bitmaps,
geometry and numbers kept as they are."""

from __future__ import annotations

from dicomveil.cleaners.base import Cleaning, Context, Element, Outcome
from dicomveil.cleaners.free_text import FreeText

# VRs that are not graphics: left to the Basic Profile's action when a cleaner cannot clean.
_NOT_GRAPHIC_VRS = frozenset({"DA", "DT", "TM", "PN", "UI", "UN", "SQ"})


class Graphics(FreeText):
    """Texts cleaned like free text; bitmaps, geometry and numbers kept."""

    def clean(self, element: Element, context: Context) -> Cleaning | None:
        """Clean one element (see :class:`dicomveil.cleaners.base.Cleaner`)."""
        cleaned = super().clean(element, context)
        if cleaned is None and element.vr not in _NOT_GRAPHIC_VRS:
            # Overlay and curve bitmaps, geometry and numbers: kept as they are.
            return Cleaning(Outcome.KEEP_AS_IS, " (graphics kept)")
        return cleaned
