"""Helpers shared by several test modules: the CLI runner and pydicom-data's location."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pydicom
from typer.testing import CliRunner, Result

from dicomveil.cli import app

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
