"""Shared fixtures: keys, synthetic patients with explicit fake PHI, and engines."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileDataset

from dicomveil import Engine, Key, Profile, Pseudonymizer
from tests.support import postgres, synthetic
from tests.support.postgres import PostgresServer

KEY = Key(bytes(range(32)))
OTHER_KEY = Key(bytes(range(1, 33)))
TODAY = dt.date(2026, 11, 30)


@pytest.fixture(autouse=True)
def _isolated_default_key(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test may touch the user's real default key, nor write run journals into the
    user's state folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DICOMVEIL_KEY", str(home / "key"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))


@pytest.fixture(autouse=True)
def _console_width_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich fixes a console's width for good when COLUMNS is set as it is created (pytest-xdist
    sets COLUMNS=80 for its workers): let it follow COLUMNS (10000 in the CLI tests' env)
    again, so that no line is wrapped and no table cell cut whoever runs the tests."""
    import dicomveil.cli as dv_cli

    for console in (dv_cli.out, dv_cli.err):
        monkeypatch.setattr(console, "_width", None)


@pytest.fixture
def key() -> Key:
    return KEY


@pytest.fixture
def patient() -> synthetic.FakePatient:
    return synthetic.fake_patient(1)


@pytest.fixture
def ct(patient: synthetic.FakePatient) -> list[FileDataset]:
    return synthetic.ct_series(patient, seed=1, n_slices=3, rows=16, columns=16)


@pytest.fixture
def mr(patient: synthetic.FakePatient) -> list[FileDataset]:
    return synthetic.mr_series(patient, seed=1, n_slices=2, rows=16, columns=16)


EngineFactory = Callable[..., Engine]


@pytest.fixture
def make_engine() -> EngineFactory:
    def make(
        profile: str | Profile = "ps3.15-basic", *options: str, key: Key = KEY, **kwargs: object
    ) -> Engine:
        chosen = profile if isinstance(profile, Profile) else Profile.named(profile)
        chosen = chosen.with_options(options)
        return Engine(chosen.compile(), Pseudonymizer(key), today=TODAY, **kwargs)  # type: ignore[arg-type]

    return make


def write_profile(folder: Path, text: str, name: str = "custom.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def deid(engine: Engine, ds: Dataset) -> Dataset:
    result = engine.deidentify(ds)
    assert result.dataset is not None, result.withheld_detail
    return result.dataset


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (skipped where Debian's is not installed)."""
    yield from postgres.postgres_server()
