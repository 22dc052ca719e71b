"""The Python front door: ``deidentify`` a pydicom dataset or files on disk."""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import overload

from pydicom.dataset import Dataset

from dicomveil.engine import Engine
from dicomveil.errors import WithheldError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.identity.keys import Key, load_or_create_default_key
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io.layout import Layout
from dicomveil.profiles import Profile
from dicomveil.runs.batch import RunConfig, RunSummary, run
from dicomveil.standard.options import Option


def _profile(profile: Profile | str, options: Iterable[str | Option]) -> Profile:
    resolved = profile if isinstance(profile, Profile) else Profile.named(profile)
    return resolved.with_options(options)


@overload
def deidentify(
    source: Dataset,
    output: None = None,
    *,
    profile: Profile | str = ...,
    options: Iterable[str | Option] = ...,
    key: Key | None = ...,
    crosswalk: Crosswalk | None = ...,
    today: _dt.date | None = ...,
) -> Dataset: ...


@overload
def deidentify(
    source: str | PathLike[str] | Sequence[str | PathLike[str]],
    output: str | PathLike[str],
    *,
    profile: Profile | str = ...,
    options: Iterable[str | Option] = ...,
    key: Key | None = ...,
    crosswalk: Crosswalk | None = ...,
    today: _dt.date | None = ...,
) -> RunSummary: ...


def deidentify(
    source: Dataset | str | PathLike[str] | Sequence[str | PathLike[str]],
    output: str | PathLike[str] | None = None,
    *,
    profile: Profile | str = "ps3.15-basic",
    options: Iterable[str | Option] = (),
    key: Key | None = None,
    crosswalk: Crosswalk | None = None,
    today: _dt.date | None = None,
) -> Dataset | RunSummary:
    """De-identify a dataset (returns a de-identified copy; the input is not changed) or
    files, folders and zip archives on disk (written under ``output``; returns the summary).

    Without ``key`` the user's default key is used (created on first use).
    """
    chosen = _profile(profile, options)
    secret = key if key is not None else load_or_create_default_key()[0]
    if isinstance(source, Dataset):
        if output is not None:
            raise TypeError("a dataset is de-identified in memory: pass no output")
        engine = Engine(chosen.compile(), Pseudonymizer(secret), crosswalk=crosswalk, today=today)
        result = engine.deidentify(copy.deepcopy(source))
        if result.dataset is None:
            assert result.withheld is not None
            raise WithheldError(result.withheld, result.withheld_detail)
        return result.dataset
    if output is None:
        raise TypeError("files are written to an output folder: pass output")
    if isinstance(source, (str, PathLike)):
        paths = [Path(source)]
    else:
        paths = [Path(str(s)) for s in source]
    config = RunConfig(
        profile=chosen,
        key=secret,
        output=Path(output),
        layout=Layout(),
        crosswalk=crosswalk,
        workers=1,
        today=today,
    )
    return run(paths, config)
