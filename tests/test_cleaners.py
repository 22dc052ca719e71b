"""The cleaner protocol and registry (issue 12): the README's example cleaner, taken from
the README as written, plugged in with one registry entry, cleans what it says."""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType, ModuleType

import pytest
from pydicom.dataset import FileDataset

from dicomveil.cleaners import CLEANERS, Cleaner
from dicomveil.engine import handlers
from dicomveil.standard.options import Option

from .conftest import EngineFactory, deid

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> ModuleType:
    text = README.read_text()
    match = re.search(r"```python\n(# src/dicomveil/cleaners/approved\.py\n.*?)```", text, re.S)
    assert match, "the README's cleaner example"
    module = ModuleType("approved")
    exec(compile(match[1], "README.md", "exec"), module.__dict__)
    return module


def test_every_registered_cleaner_follows_the_protocol() -> None:
    for option, cleaner in CLEANERS.items():
        assert isinstance(option, Option)
        assert isinstance(cleaner.reads_identifiers, bool)
        assert callable(cleaner.clean)


def test_the_readme_cleaner_example_works(
    monkeypatch: pytest.MonkeyPatch, make_engine: EngineFactory, ct: list[FileDataset]
) -> None:
    example = _readme_example()
    cleaner: Cleaner = example.ApprovedDescriptions()
    registry = {**CLEANERS, Option.CLEAN_DESCRIPTORS: cleaner}
    monkeypatch.setattr(handlers, "CLEANERS", MappingProxyType(registry))
    approved, other = ct[0], ct[1]
    approved.SeriesDescription = "t1 mprage sag"
    other.SeriesDescription = "Head scan of Jane Roe"
    engine = make_engine("ps3.15-basic", "clean-descriptors")
    assert deid(engine, approved).SeriesDescription == "t1 mprage sag"
    assert deid(engine, other).SeriesDescription == ""
    # Without the entry, the option's own cleaner replaces the patient's name only.
    monkeypatch.setattr(handlers, "CLEANERS", CLEANERS)
    ds = ct[2]
    family = str(ds.PatientName).split("^")[0]
    ds.SeriesDescription = f"Head scan of {family}"
    cleaned = deid(make_engine("ps3.15-basic", "clean-descriptors"), ds).SeriesDescription
    assert cleaned.startswith("Head scan") and family not in cleaned
