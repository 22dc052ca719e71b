"""The date cleaner (retain-long-modified-dates): a date is "cleaned" by the K action with
the patient's keyed date shift, so intervals between dates survive."""

from __future__ import annotations

from dicomveil.cleaners.base import Cleaning, Context, Element, Outcome


class ShiftedDates:
    """Dates and times kept with the patient's date shift (the engine shifts kept dates)."""

    reads_identifiers = False

    def clean(self, element: Element, context: Context) -> Cleaning | None:
        """Clean one element (see :class:`dicomveil.cleaners.base.Cleaner`)."""
        return Cleaning(Outcome.APPLY_KEEP, " (dates shifted)")
