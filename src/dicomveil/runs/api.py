"""The Python front door: ``deidentify`` a pydicom dataset or files on disk."""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import TypedDict, Unpack, overload

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


class _Settings(TypedDict, total=False):
    """The keyword arguments of :func:`deidentify` (as typed in its overloads)."""

    profile: Profile | str
    options: Iterable[str | Option]
    key: Key | None
    crosswalk: Crosswalk | None
    today: _dt.date | None
    verify: bool | None


@overload
def deidentify(source: Dataset, output: None = None, **settings: Unpack[_Settings]) -> Dataset: ...


@overload
def deidentify(
    source: str | PathLike[str] | Sequence[str | PathLike[str]],
    output: str | PathLike[str],
    **settings: Unpack[_Settings],
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
    verify: bool | None = None,
) -> Dataset | RunSummary:
    """De-identify a dataset in memory, or files, folders and zip archives on disk.

    Parameters
    ----------
    source : pydicom.dataset.Dataset, path or sequence of paths
        A dataset (never changed: a de-identified copy is returned), or inputs on disk.
    output : path, optional
        With inputs on disk: the output folder (required); with a dataset: none.
    profile : Profile or str
        The profile, or a preset's name or a TOML file's path (default ``ps3.15-basic``).
    options : iterable of str or Option
        Options added to the profile.
    key : Key, optional
        The key of pseudonyms, UIDs and date shifts (default: the user's default key,
        created on first use).
    crosswalk : Crosswalk, optional
        Study IDs by original PatientID, instead of keyed pseudonyms.
    today : datetime.date, optional
        The date of the ``{today}`` template (default: today).
    verify : bool, optional
        Files on disk: the release gate (``run --verify``), each written file checked by
        the verifier and withheld when it flags it (default: as the profile says).

    Returns
    -------
    pydicom.dataset.Dataset or RunSummary
        The de-identified copy of a dataset; for inputs on disk, the run's summary.

    Raises
    ------
    WithheldError
        A dataset that the profile withholds (the reason names what, never a value).
    ProfileError, KeyFileError, CrosswalkError
        An unusable profile, key or crosswalk.
    OutputKeyError
        The output folder holds files another key wrote (see :class:`RunConfig`'s
        ``allow_other_key`` to go on anyway).
    TypeError
        A dataset with an output folder, or inputs on disk without one.
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
        verify=verify,
    )
    return run(paths, config)
