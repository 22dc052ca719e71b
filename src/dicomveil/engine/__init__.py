"""The de-identification engine: walks a dataset and applies a compiled profile.

- :mod:`~dicomveil.engine.core`: :class:`Engine` and its :class:`Result`;
- :mod:`~dicomveil.engine.risks`: what withholds an object before the walk;
- :mod:`~dicomveil.engine.walk`: the walk of one dataset, sequences included;
- :mod:`~dicomveil.engine.handlers`: one handler per action (X, Z, D, K, U, C, replace);
- :mod:`~dicomveil.engine.values`: small readers of element values;
- :mod:`~dicomveil.engine.report`: :class:`ElementReport`, what ``explain`` shows;
- :mod:`~dicomveil.engine.explain`: ``dicomveil explain`` for one file.
"""

from dicomveil.engine.core import Engine, Result
from dicomveil.engine.report import ElementReport
from dicomveil.engine.values import CLASS_UID_TAGS

__all__ = ["CLASS_UID_TAGS", "ElementReport", "Engine", "Result"]
