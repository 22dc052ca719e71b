"""The ``dicomveil`` program (``python -m dicomveil`` too): loads the command line, then runs it.

Starting ``dicomveil`` loads about 700 modules (pydicom, numpy, Typer, Rich and dicomveil's
own) before any work. These things make that shorter (see benchmarks/README.md,
"Start-up"):

* The garbage collector is off while the modules load, and what they loaded is then frozen
  (kept out of every later collection, and out of the one at exit): loading makes many
  objects and few cycles, and the collections that ran meanwhile and at exit found next to
  nothing.
* ``requests`` and ``urllib.request`` are deferred (:class:`_Deferred`): pydicom imports
  them for its example-data downloader, which the command line never calls (``urllib.request``
  brings ``http.client``, ``email`` and ``ssl``: about 35 ms); so is ``PIL.ImageCms``
  (about 25 ms), which pydicom imports for ICC profiles, which the command line never applies.
* NumPy's OpenBLAS starts one thread per core when it is imported, which spins on the other
  cores for a while before it sleeps: 0.07-0.10 s of CPU at every start (the program's, a
  gateway's and each spawned worker's), taken from the workers on a small machine. dicomveil
  makes no BLAS calls (no matrix products), so the program asks for one thread
  (``OPENBLAS_NUM_THREADS=1``) unless the environment says otherwise.
* A command line that asks for a local Dask cluster (``--dask local``) starts the cluster's
  fork server first (:mod:`dicomveil.runs.forkserver`): it imports what the workers need
  while the program imports the rest.

Only the program does this; a program that imports :mod:`dicomveil.cli` (or calls its
``main``) keeps its own imports and collector.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from dicomveil.runs import forkserver

_DEFERRED = ("requests", "urllib.request", "PIL.ImageCms")
"""Modules the program loads only when first used (see the module's docstring)."""


class _Deferred(types.ModuleType):
    """A module imported for real only when one of its attributes is first read.

    It stands in for the module in ``sys.modules``: ``import requests`` gives it without
    running anything; the first attribute anyone reads (the DICOMweb client's first
    request, ``import requests.adapters``) imports the real module, which then replaces it
    in ``sys.modules``, and every later read goes to the real module.

    Parameters
    ----------
    name : str
        The module's name.
    spec : importlib.machinery.ModuleSpec
        Where it is (read by every ``import`` of it: an attribute, never a load).
    """

    def __init__(self, name: str, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(name)
        self.__spec__ = spec

    def __getattr__(self, attribute: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attribute)


def defer(name: str) -> None:
    """Put a :class:`_Deferred` for ``name`` in ``sys.modules``, when the module is
    installed and not loaded yet.

    Parameters
    ----------
    name : str
        A module's full name (a submodule also stands in its package's attribute).
    """
    if name in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(name)  # imports the parent package of a submodule
    except ModuleNotFoundError:  # the parent is not installed (Pillow: an optional extra)
        return
    if spec is not None:
        stand_in = _Deferred(name, spec)
        sys.modules[name] = stand_in
        parent, _, child = name.rpartition(".")
        if parent:  # ``import a.b`` then reads ``b`` of ``a``; the real one replaces it
            setattr(sys.modules[parent], child, stand_in)


def load() -> Callable[[Sequence[str] | None], None]:
    """Load the command line as the program does (see the module's docstring).

    Returns
    -------
    callable
        :func:`dicomveil.cli.main`.
    """
    # before NumPy is first imported; the processes the program starts inherit it
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    collecting = gc.isenabled()
    gc.disable()
    try:
        forkserver.start_for(sys.argv[1:])  # a local Dask cluster's: before the imports below
        for name in _DEFERRED:
            defer(name)
        from dicomveil.cli import main as run_command
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    return run_command


def main() -> None:
    """The ``dicomveil`` program: the command line, loaded by :func:`load`, on ``sys.argv``.

    Raises
    ------
    SystemExit
        Always, with the command's exit code.
    """
    load()(None)
