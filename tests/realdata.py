"""The real DICOM files that pip installs, named by package (``../shared/reference/test-data.md``).

Sources, in this order:

- ``pydicom``: pydicom's bundled ``test_files`` (recursively), ``charset_files`` and
  ``palettes``;
- ``pydicom-data``: the files of the pydicom-data package;
- ``deid-data``: deid-data's ``data`` folder (its two zip archives included: dicomveil reads
  zip members);
- ``pynetdicom``: pynetdicom's ``tests/dicom_files``;
- ``dicognito``, ``nibabel``, ``heudiconv``: the test data of their source distributions,
  unpacked by ``tools/fetch_test_data.py`` into ``.test-data/`` (or ``$DICOMVEIL_TEST_DATA``).

A file counts when it is DICOM to an outside reader: it has the ``DICM`` prefix, ends in
``.dcm``, or pydicom reads it without ``force``; every zip archive of deid-data counts too.
Nothing here runs dicomveil. Missing sources are listed by :func:`missing_sources`, so the
tests that need them can skip saying why (or fail where ``DICOMVEIL_REQUIRE_TEST_DATA=1``,
as in CI).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom

from tests.support.commands import pydicom_data_folder

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("DICOMVEIL_REQUIRE_TEST_DATA") == "1"
_SDISTS = ("dicognito", "nibabel", "heudiconv")


@dataclass(frozen=True)
class RealFile:
    path: Path
    source: str  # the package it comes from
    name: str  # source/relative path: stable, used as a test id

    @property
    def is_zip(self) -> bool:
        return self.path.suffix.lower() == ".zip"


def sdist_folder() -> Path:
    return Path(os.environ.get("DICOMVEIL_TEST_DATA") or ROOT / ".test-data")


def _package_folder(module: str, *parts: str) -> Path | None:
    try:
        imported = __import__(module)
    except ImportError:
        return None
    if imported.__file__ is None:
        return None
    folder = Path(imported.__file__).resolve().parent.joinpath(*parts)
    return folder if folder.is_dir() else None


def _roots() -> dict[str, list[Path] | None]:
    pydicom_root = Path(pydicom.__file__).resolve().parent / "data"
    roots: dict[str, list[Path] | None] = {
        "pydicom": [pydicom_root / f for f in ("test_files", "charset_files", "palettes")]
    }
    external = pydicom_data_folder()
    roots["pydicom-data"] = [external] if external else None
    deid = _package_folder("deid_data", "data")
    roots["deid-data"] = [deid] if deid else None
    net = _package_folder("pynetdicom", "tests", "dicom_files")
    roots["pynetdicom"] = [net] if net else None
    for name in _SDISTS:
        folder = sdist_folder() / name
        roots[name] = [folder] if (folder / ".complete").exists() else None
    return roots


def is_dicom(path: Path) -> bool:
    """DICOM to an outside reader (see the module's docstring)."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return False
    return True


def _walk(source: str, roots: list[Path]) -> Iterator[RealFile]:
    for root in roots:
        base = root.parent if source == "pydicom" else root
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.name.startswith(".") or path.suffix == ".py":
                continue
            if (source == "deid-data" and path.suffix.lower() == ".zip") or is_dicom(path):
                yield RealFile(path, source, f"{source}/{path.relative_to(base).as_posix()}")


@cache
def real_files() -> tuple[RealFile, ...]:
    """Every real DICOM file of the sources that are present."""
    files: list[RealFile] = []
    for source, roots in _roots().items():
        if roots:
            files.extend(_walk(source, roots))
    return tuple(files)


def missing_sources() -> list[str]:
    """The sources that are not installed or not fetched, each with how to get it."""
    missing = []
    for source, roots in _roots().items():
        if roots is None:
            how = (
                "python tools/fetch_test_data.py"
                if source in _SDISTS
                else f"pip install {source} (the test extra)"
            )
            missing.append(f"{source} ({how})")
    return missing


def place(source: Path, folder: Path) -> Path:
    """``source`` in ``folder`` under its own name: a hard link where the file system allows
    (no copy; the real file is never written to), else a copy."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    if not target.exists():
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return target
