"""Helpers shared by several test modules: the CLI runner and the real files of pydicom's
test data and of pydicom-data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner, Result

from dicomveil.cli import app
from dicomveil.cli._json import schema_path

# A wide console: Rich would otherwise wrap long lines (and file names) at 80 columns.
ENV: dict[str, str | None] = {
    "COLUMNS": "10000",
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "NO_COLOR": "1",
}
RUNNER = CliRunner(env=ENV)
PYDICOM_DATA = Path(pydicom.__file__).resolve().parent / "data"


def cli(*args: str | Path) -> Result:
    """Run the ``dicomveil`` command line in this process."""
    return RUNNER.invoke(app, [str(a) for a in args], catch_exceptions=False)


def keygen(folder: Path) -> Path:
    """A key written by ``dicomveil keygen`` into ``folder``."""
    path = folder / "keys" / "project.key"
    result = cli("keygen", path)
    assert result.exit_code == 0, result.output
    return path


def pydicom_data_folder() -> Path | None:
    """The data folder of the pydicom-data package (module ``data_store``), if installed."""
    for entry in entry_points(group="pydicom.data.external_sources"):
        if entry.name != "pydicom-data":
            continue
        try:
            store: Any = entry.load()()
        except Exception:
            return None
        folder = Path(store.data_path)
        return folder if folder.is_dir() else None
    return None


BUNDLED_FOLDERS = ("test_files", "charset_files", "palettes")


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    name: str  # relative name, used as the test id


def real_files() -> list[CorpusFile]:
    """Every file of pydicom's bundled test data and, when installed, of pydicom-data."""
    files = []
    for folder in BUNDLED_FOLDERS:
        for path in sorted((PYDICOM_DATA / folder).rglob("*")):
            if path.is_file():
                files.append(CorpusFile(path, path.relative_to(PYDICOM_DATA).as_posix()))
    external = pydicom_data_folder()
    if external is not None:
        for path in sorted(external.rglob("*")):
            if path.is_file():
                name = "pydicom-data/" + path.relative_to(external).as_posix()
                files.append(CorpusFile(path, name))
    return files


def validate(document: Any, name: str) -> None:
    """Check a ``--json`` report against its documented JSON Schema."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the reports")
    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
