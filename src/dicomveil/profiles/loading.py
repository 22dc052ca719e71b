"""Loading profiles: presets by name, TOML files by path, with ``extends`` chains.

The shape of a user's file (which keys, of which types) is validated by pydantic models
with ``extra="forbid"`` (:mod:`~dicomveil.profiles.profile_file`; a preset's by the tests);
what the values mean (known keywords and tags, actions, options, risks, templates) by
:mod:`dicomveil.profiles.rules` and the enums of :mod:`dicomveil.standard`. Every problem
is a :class:`~dicomveil.errors.ProfileError` that names the file and the entry
(``rules[2].keyword``), never a traceback.

The profile class is passed in (``make``) so that this module does not import the model
that calls it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomveil.cleaners.text import Replacements
from dicomveil.errors import ProfileError
from dicomveil.profiles.generalize import Generalization
from dicomveil.profiles.rules import Base, Rule, parse_rule
from dicomveil.standard.options import Option
from dicomveil.standard.risks import Risk

if TYPE_CHECKING:
    from dicomveil.profiles.model import Profile

    Make = Callable[..., Profile]


@dataclass(frozen=True)
class _Spec:
    """A profile TOML file's tables, as written (its shape checked by
    :mod:`~dicomveil.profiles.profile_file` for a user's file; a preset's by the tests)."""

    name: str | None = None
    description: str | None = None
    source: str | None = None
    base: str | None = None
    extends: str | None = None
    options: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    private: str | None = None
    references: str | None = None
    verify: bool | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    clean: dict[str, Any] | None = None
    generalize: dict[str, Any] | None = None


def preset_names() -> tuple[str, ...]:
    """The names of the presets that ship with dicomveil (``presets/*.toml``)."""
    files = resources.files("dicomveil.profiles").joinpath("presets")
    return tuple(
        sorted(p.name.removesuffix(".toml") for p in files.iterdir() if p.name.endswith(".toml"))
    )


def load_profile(name_or_path: str | Path, make: Make) -> Profile:
    """A preset by name, or a TOML profile file by path.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A preset's name or a file's path.
    make : callable
        The profile class.

    Returns
    -------
    Profile
        The profile.

    Raises
    ------
    ProfileError
        Unknown name, unreadable file or invalid content (naming the file and entry).
    """
    text = str(name_or_path)
    if text in preset_names():
        return load_preset(text, make)
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        return load_file(path, (), make)
    known = ", ".join(preset_names())
    raise ProfileError(f"unknown profile {text!r} (known: {known}, or a path to a .toml file)")


@cache
def load_preset(name: str, make: Make) -> Profile:
    """A preset by name (loaded once per process)."""
    raw = resources.files("dicomveil.profiles").joinpath("presets", f"{name}.toml").read_bytes()
    data = tomllib.loads(raw.decode("utf-8"))
    return _from_toml(data, f"preset {name}", None, (), make, trusted=True)


def load_file(path: Path, chain: tuple[str, ...], make: Make) -> Profile:
    """A TOML profile file; ``chain`` holds the files that extend it (cycles are errors)."""
    key = str(path.resolve())
    if key in chain:
        raise ProfileError("profiles extend each other in a cycle", source=str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read the profile ({exc.strerror})", source=str(path)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"not valid TOML: {exc}", source=str(path)) from None
    return _from_toml(data, str(path), path.parent, (*chain, key), make)


def _validated(data: dict[str, Any], source: str, trusted: bool) -> _Spec:
    """The file's tables; a user's file (not ``trusted``) is checked first, by pydantic
    (loaded then: a preset, which ships with dicomveil and which the tests check, does not
    need it, and a run with a preset starts without it)."""
    if not trusted:
        from dicomveil.profiles.profile_file import check_shape

        check_shape(data, source)
    return _Spec(**data)


def _from_toml(
    data: dict[str, Any],
    source: str,
    folder: Path | None,
    chain: tuple[str, ...],
    make: Make,
    *,
    trusted: bool = False,
) -> Profile:
    spec = _validated(data, source, trusted)
    parent: Profile | None = None
    if spec.extends is not None:
        if spec.base is not None:
            raise ProfileError("use either 'extends' or 'base', not both", source=source)
        parent = _resolve_extends(spec.extends, source, folder, chain, make)
        if parent.base is Base.COPY:
            raise ProfileError(
                "cannot extend a byte-identical copy", source=source, entry="extends"
            )
    if parent is None:
        try:
            base = Base(spec.base if spec.base is not None else "ps3.15")
        except ValueError:
            raise ProfileError(
                f"unknown base {spec.base!r} (known: ps3.15, keep, copy)",
                source=source,
                entry="base",
            ) from None
        parent = make(name="", base=base, keep_private=base is not Base.PS315)
    options = set(parent.options)
    for i, item in enumerate(spec.options):
        try:
            options.add(Option.parse(item))
        except ProfileError as exc:
            raise ProfileError(str(exc), source=source, entry=f"options[{i}]") from None
    allow = set(parent.allow)
    for i, item in enumerate(spec.allow):
        try:
            allow.add(Risk(item))
        except ValueError:
            known = ", ".join(r.value for r in Risk)
            raise ProfileError(
                f"unknown risk {item!r} (known: {known})", source=source, entry=f"allow[{i}]"
            ) from None
    keep_private = parent.keep_private if spec.private is None else spec.private == "keep"
    remove_references = (
        parent.remove_references if spec.references is None else spec.references == "remove"
    )
    clean = parent.clean
    if "clean" in data:
        clean = clean.merged(Replacements.parse(data["clean"], source))
    rules: list[Rule] = list(parent.rules)
    for i, entry in enumerate(spec.rules):
        rules.append(parse_rule(dict(entry), source, f"rules[{i}]"))
    generalize = parent.generalize
    if spec.generalize is not None:
        generalize = _generalization(spec.generalize, source)
    default_name = Path(source).stem if folder is not None else source
    try:
        return make(
            name=spec.name if spec.name is not None else default_name,
            description=spec.description if spec.description is not None else parent.description,
            source=spec.source if spec.source is not None else (parent.source or source),
            base=parent.base,
            options=frozenset(options),
            rules=tuple(rules),
            allow=frozenset(allow),
            keep_private=keep_private,
            clean=clean,
            remove_references=remove_references,
            verify=parent.verify if spec.verify is None else spec.verify,
            generalize=generalize,
            origin=str(Path(source).resolve()) if folder is not None else "",
        )
    except ProfileError as exc:
        raise ProfileError(str(exc), source=source) from None


def _generalization(table: dict[str, Any], source: str) -> Generalization:
    """The ``[generalize]`` table: ``age`` (years per band), ``dates = "year"``, ``size``
    (cm per band), ``weight`` (kg per band)."""
    unknown = sorted(set(table) - {"age", "dates", "size", "weight"})
    if unknown:
        raise ProfileError(
            f"unknown key(s) {', '.join(unknown)} (known: age, dates, size, weight)",
            source=source,
            entry="generalize",
        )
    bands = {}
    for name in ("age", "size", "weight"):
        value = table.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ProfileError(
                "must be a whole number of at least 1", source=source, entry=f"generalize.{name}"
            )
        bands[name] = value
    dates = table.get("dates")
    if dates not in (None, "year"):
        raise ProfileError('must be "year"', source=source, entry="generalize.dates")
    return Generalization(
        age_band=bands["age"],
        dates_to_year=dates == "year",
        size_band_cm=bands["size"],
        weight_band_kg=bands["weight"],
    )


def _resolve_extends(
    name: str, source: str, folder: Path | None, chain: tuple[str, ...], make: Make
) -> Profile:
    if name in preset_names():
        return load_preset(name, make)
    if folder is not None:
        path = (folder / name) if not Path(name).is_absolute() else Path(name)
        if path.exists():
            return load_file(path, chain, make)
    raise ProfileError(f"extends unknown profile {name!r}", source=source, entry="extends")
