"""Cleaners: what an option's C (clean) action does to free text, structures, graphics and
pixels.

- :mod:`~dicomveil.cleaners.base`: the :class:`Cleaner` protocol and what it returns;
- :mod:`~dicomveil.cleaners.registry`: :data:`CLEANERS`, the cleaner of each option;
- :mod:`~dicomveil.cleaners.free_text`, :mod:`~dicomveil.cleaners.graphics`,
  :mod:`~dicomveil.cleaners.dates`: the element cleaners;
- :mod:`~dicomveil.cleaners.text`: the free-text recognizers and tokens they use;
- :mod:`~dicomveil.cleaners.structured`: the rules inside structures an option cleans (SR
  content, D sequences);
- :mod:`~dicomveil.cleaners.pixels`: clean-pixel-data, a step before the engine (burned-in
  text found and painted over).
"""

from dicomveil.cleaners.base import Cleaner, Cleaning, Context, Element, Outcome
from dicomveil.cleaners.registry import CLEANERS

__all__ = ["CLEANERS", "Cleaner", "Cleaning", "Context", "Element", "Outcome"]
