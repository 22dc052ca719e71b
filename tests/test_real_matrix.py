"""Every real DICOM file that pip installs, under every preset and option combination.

The files: :mod:`tests.realdata` (pydicom, pydicom-data, deid-data, pynetdicom, and the
source distributions of dicognito, nibabel and heudiconv that ``tools/fetch_test_data.py``
unpacks). The configurations and what each case checks: :mod:`tests.matrix`. In short, for
each (file, profile) the outcome is one of

- **written**, and ``dicomveil verify --against`` the input finds no leak, no conformance,
  reference or validity problem, and ``dciodvfy`` finds no error the input did not have;
- **withheld**, with a reason that a fact of the file supports (BurnedInAnnotation YES, an
  image of a burned-in kind without BurnedInAnnotation NO, an SR content tree, ...) and
  names it;
- **failed** (or skipped) for an input that pydicom or dcmtk finds truly malformed, and
  skipped for a DICOMDIR;

where the facts come from pydicom and dcmtk reading the file (:mod:`tests.oracles`), never
from dicomveil's answer. Across configurations: no option, alone or combined, withholds a
file that ps3.15-basic writes, except clean-pixel-data, whose definition withholds what it
finds but cannot redact (README, *What is never kept*).

One test per file runs every configuration on it, so that the cross-configuration rule can
be checked in one place; its message lists every problem. The files whose every frame OCR
reads for a long time under clean-pixel-data are marked ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .matrix import CONFIGS, OCR_SAMPLE_PIXELS, CaseResult, run_case, sampled
from .oracles import DCIODVFY, facts
from .realdata import REQUIRE, RealFile, missing_sources, real_files

MISSING = missing_sources()


def _heavy(file: RealFile) -> bool:
    if file.is_zip:
        return file.path.stat().st_size > 10_000_000
    return facts(file.path).pixel_count > OCR_SAMPLE_PIXELS


def _params() -> Iterator[Any]:
    # The heavy files first: pytest-xdist hands tests out in this order, and a long test
    # started last would leave the other worker idle.
    files = sorted(real_files(), key=lambda f: not _heavy(f))
    for file in files:
        marks = [pytest.mark.slow] if _heavy(file) else []
        yield pytest.param(file, id=file.name, marks=marks)


def test_every_source_of_real_data_is_present() -> None:
    """The matrix covers every package of ``../shared/reference/test-data.md``."""
    if MISSING and not REQUIRE:
        pytest.skip("missing: " + "; ".join(MISSING))
    assert MISSING == []
    assert len(real_files()) >= 350
    # The matrix compares dciodvfy's errors only where it is installed: in CI it must be.
    assert DCIODVFY is not None, "dciodvfy (dicom3tools) is not installed"


@pytest.mark.parametrize("file", list(_params()))
def test_real_file_under_every_profile(file: RealFile) -> None:
    results: dict[str, CaseResult] = {}
    problems: list[str] = []
    for config in CONFIGS:
        if not sampled(config, file):
            continue
        result = run_case(config, file)  # its folder removed at once: up to 100 MB a case
        results[config.name] = result
        problems.extend(f"{config.name}: {p}" for p in result.problems)
    basic = results["ps3.15-basic"]
    for config in CONFIGS:
        other = results.get(config.name)
        if other is None or config.profile != "ps3.15-basic" or not config.options:
            continue
        if basic.outcome == "written" and other.outcome == "withheld":
            if config.has("clean-pixel-data") and other.reason.startswith("clean-pixel-data:"):
                continue  # the option's own definition (README)
            problems.append(f"{config.name}: withheld what ps3.15-basic writes: {other.reason}")
    assert not problems, "\n".join(problems)
