"""The writer's pixel data copy, with and without the kernel's copy_file_range, and what the
command line loads before it runs."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomveil import Key, Profile, RunConfig, run
from tests.support import synthetic

KEY = Key(b"w" * 32)


def _inputs(folder: Path) -> Path:
    patient = synthetic.fake_patient(11)
    datasets = synthetic.ct_series(patient, seed=11, n_slices=3, rows=64, columns=64)
    synthetic.write_series(datasets, folder)
    return folder


def _outputs(inputs: Path, output: Path) -> dict[str, bytes]:
    summary = run([inputs], RunConfig(profile=Profile.named("ps3.15-basic"), key=KEY,
                                      output=output, workers=1))  # fmt: skip
    assert summary.ok and len(summary.written) == 3
    return {str(p.relative_to(output)): p.read_bytes() for p in sorted(output.rglob("*.dcm"))}


def _failing_copy(*args: object, **kwargs: object) -> int:
    raise OSError(errno.EXDEV, "Invalid cross-device link")


@pytest.mark.parametrize("how", ["fails", "absent"])
def test_pixel_data_without_the_kernel_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Where copy_file_range fails (another file system, an old kernel) or does not exist,
    the bytes are copied by hand: the same files, pixel data byte for byte."""
    inputs = _inputs(tmp_path / "in")
    expected = _outputs(inputs, tmp_path / "kernel")
    if how == "fails":
        monkeypatch.setattr(os, "copy_file_range", _failing_copy)
    else:
        monkeypatch.delattr(os, "copy_file_range")
    found = _outputs(inputs, tmp_path / how)
    assert found == expected
    for name, data in found.items():
        pixels = dcmread(tmp_path / how / name).PixelData
        assert pixels and pixels in data


def test_the_command_line_loads_no_database_or_network_library() -> None:
    """``dicomveil run`` starts without SQLAlchemy (loaded with --audit), pynetdicom (loaded
    by the gateway) or cryptography (loaded with --recipient and by reidentify)."""
    code = "import sys, dicomveil.cli; print(sorted(m for m in ('sqlalchemy', 'pynetdicom', 'cryptography') if m in sys.modules))"  # noqa: E501
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def test_a_module_of_an_optional_package_not_installed_is_not_deferred() -> None:
    """The program defers PIL.ImageCms; without Pillow (``pip install .`` leaves it out: it
    is the pixels extra) there is nothing to defer, and the program starts (the README's
    install and run command failed with ModuleNotFoundError in a fresh virtualenv)."""
    code = (
        "import sys\n"
        "sys.modules['PIL'] = None  # as if Pillow were not installed\n"
        "from dicomveil._command import defer\n"
        "defer('PIL.ImageCms')\n"
        "print('PIL.ImageCms' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_the_program_defers_requests_and_freezes_what_it_loaded() -> None:
    """The ``dicomveil`` program loads the command line without running ``requests`` (pydicom
    imports it for a downloader the command line never calls; urllib3 comes with it), the
    module works when used, and what was loaded is out of the collector's passes."""
    code = (
        "import gc, sys\n"
        "from dicomveil._command import load\n"
        "main = load()\n"
        "print('urllib3' in sys.modules, gc.isenabled(), gc.get_freeze_count() > 50000)\n"
        "import pydicom.data.download as d, requests\n"
        "session = requests.Session()\n"
        "import requests.adapters\n"
        "print('urllib3' in sys.modules, type(sys.modules['requests']).__name__,"
        " d.HAVE_REQUESTS, d.requests.Session is requests.Session,"
        " isinstance(session.get_adapter('http://x'), requests.adapters.HTTPAdapter))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split("\n")[:2] == ["False True True", "True module True True True"]
