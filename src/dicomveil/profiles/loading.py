"""Loading profiles: presets by name, TOML files by path, with ``extends`` chains.

The shape of a file (which keys, of which types) is validated by pydantic models with
``extra="forbid"``; what the values mean (known keywords and tags, actions, options, risks,
templates) by :mod:`dicomveil.profiles.rules` and the enums of :mod:`dicomveil.standard`.
Every problem is a :class:`~dicomveil.errors.ProfileError` that names the file and the
entry (``rules[2].keyword``), never a traceback.

The profile class is passed in (``make``) so that this module does not import the model
that calls it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from dicomveil.cleaners.text import Replacements
from dicomveil.errors import ProfileError
from dicomveil.profiles.generalize import Generalization
from dicomveil.profiles.rules import Base, Rule, parse_rule
from dicomveil.standard.options import Option
from dicomveil.standard.risks import Risk
from dicomveil.validation import key_path

if TYPE_CHECKING:
    from dicomveil.profiles.model import Profile

    Make = Callable[..., Profile]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RuleEntry(_Entry):
    """One ``[[rules]]`` table: exactly one of tag, keyword or private, and an action."""

    tag: str | None = None
    keyword: str | None = None
    private: dict[str, str | int] | None = None
    action: str | None = None
    value: str | None = None
    reason: str = ""


class ProfileFile(_Entry):
    """A profile TOML file, as written (see :mod:`dicomveil.profiles.model`)."""

    name: str | None = None
    description: str | None = None
    source: str | None = None
    base: str | None = None
    extends: str | None = None
    options: list[str] = []
    allow: list[str] = []
    private: Literal["keep", "remove"] | None = None
    references: Literal["keep", "remove"] | None = None
    verify: bool | None = None
    rules: list[RuleEntry] = []
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
    data = resources.files("dicomveil.profiles").joinpath("presets", f"{name}.toml").read_bytes()
    return _from_toml(tomllib.loads(data.decode("utf-8")), f"preset {name}", None, (), make)


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


def _validated(data: dict[str, Any], source: str) -> ProfileFile:
    try:
        return ProfileFile.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc)
        if len(problems) == 1:
            entry, message = problems[0]
            raise ProfileError(message, source=source, entry=entry or None) from None
        text = "; ".join(f"{entry}: {message}" if entry else message for entry, message in problems)
        raise ProfileError(text, source=source) from None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(entry, message) per problem, unknown keys of one table together."""
    unknown: dict[str, list[str]] = {}
    found: list[tuple[str, str]] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            unknown.setdefault(key_path(loc[:-1]), []).append(str(loc[-1]))
            continue
        entry = key_path(loc)
        if kind == "list_type" and loc == ("rules",):
            message = "must be an array of tables ([[rules]])"
        elif kind in ("model_type", "dict_type") and loc[:1] == ("rules",) and len(loc) == 2:
            message = "a rule must be a table"
        elif kind == "string_type":
            message = "must be a string"
        elif kind == "list_type":
            message = "must be a list"
        elif kind == "literal_error":
            message = "must be 'keep' or 'remove'"
        elif kind in ("model_type", "dict_type"):
            message = "must be a table"
        else:
            message = str(error["msg"])
        if (entry, message) not in found:
            found.append((entry, message))
    extra = [
        (entry, f"unknown key(s) {', '.join(sorted(keys))}") for entry, keys in unknown.items()
    ]
    return extra + found


def _from_toml(
    data: dict[str, Any], source: str, folder: Path | None, chain: tuple[str, ...], make: Make
) -> Profile:
    spec = _validated(data, source)
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
        raw = entry.model_dump(exclude_unset=True)
        rules.append(parse_rule(raw, source, f"rules[{i}]"))
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
