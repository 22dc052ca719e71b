"""Scratch folders for module-scoped fixtures, removed when the module is done.

pytest keeps every folder ``tmp_path_factory`` makes until the session ends (and, for a
session with a failure, afterwards); a full run would need several GB of free disk, which a
CI machine may not have. Function-scoped folders (``tmp_path``) are removed after each
passing test by ``tmp_path_retention_policy = "failed"`` in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def scratch(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A new folder of ``factory``'s, removed with everything in it when the block ends."""
    folder = factory.mktemp(name)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
