"""Which cleaner cleans for which option: the one place to add a cleaner.

An option whose column in PS3.15 Table E.1-1 holds C (or that dicomveil gives C decisions
beyond the table, see :mod:`dicomveil.profiles`) needs an entry here; an option without
one falls back to the Basic Profile's action for its C elements.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from dicomveil.cleaners.acquisition import AcquisitionParameters
from dicomveil.cleaners.base import Cleaner
from dicomveil.cleaners.dates import ShiftedDates
from dicomveil.cleaners.free_text import FreeText
from dicomveil.cleaners.graphics import Graphics
from dicomveil.standard.options import Option

CLEANERS: Mapping[Option, Cleaner] = MappingProxyType(
    {
        Option.CLEAN_DESCRIPTORS: FreeText(),
        Option.RETAIN_PATIENT_CHARACTERISTICS: FreeText(),
        Option.CLEAN_STRUCTURED_CONTENT: FreeText(),  # sequences walked by the structure rules
        Option.CLEAN_GRAPHICS: Graphics(),
        Option.RETAIN_LONG_MODIFIED_DATES: ShiftedDates(),
        Option.RETAIN_ACQUISITION_PARAMETERS: AcquisitionParameters(),
    }
)
