"""Profiles: named presets and custom TOML files, composed and compiled into a lookup.

A :class:`Profile` is immutable and valid by construction: an unknown tag, keyword, action,
option or key is a :class:`~dicomveil.errors.ProfileError` when it loads, naming the file and
the entry. :meth:`Profile.compile` turns it, once per run, into a :class:`CompiledProfile`:
dictionaries from tag (or private creator, group and element) to a
:class:`~dicomveil.standard.actions.Decision` that the engine looks up per element.

Composition, in order (later wins):

1. the base: ``ps3.15`` (every row of PS3.15 Table E.1-1, Basic Profile column), ``keep``
   (everything kept unless a rule says otherwise) or ``copy`` (a byte-identical copy);
2. each option's column of Table E.1-1, in the order of :class:`~dicomveil.standard.options.Option`;
   where two options touch one attribute, ``K`` wins over ``C`` (the user asked to keep it);
3. the safe-private list (PS3.15 Table E.3.10-1) and TCIA's list, when their options are on;
4. the rules of the profile and of the profiles it extends, the most derived last.

Profile file format (TOML)::

    name = "my-study"                  # optional: defaults to the file name
    description = "what and why"
    extends = "ps3.15-basic"           # a named profile or a path relative to this file
    options = ["retain-uids", "RetainLongitudinalTemporalInformationFullDatesOption"]
    allow = ["burned-in-annotation"]   # risks to let through instead of withholding
    references = "keep"                # X/Z/U* reference sequences: keep (UIDs replaced)
                                       # or remove (where the IOD does not require them)
    private = "remove"                 # private elements no rule matches: remove | keep
    verify = true                      # the release gate on (run --verify) by default

    [[rules]]
    keyword = "SeriesDescription"      # or tag = "0008,103E", tag = "60xx,4000",
    action = "K"                       # or private = {creator = "...", group = "0029",
    reason = "needed for BIDS"         #               element = "xx10"}

    [[rules]]
    tag = "0008,0022"
    action = "replace"
    value = "{today}"                  # templates: {pseudonym} {today} {patient_id_hash}
                                       #            {issuer_hash}

    [clean]                            # tokens of the clean-* options' free-text cleaner
    replacement = "[REDACTED]"         # every category, or per category: name id date time
    name = "[PERSON]"                  # phone email url address institution age
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from dicomveil.cleaners.text import Replacements
from dicomveil.errors import ProfileError
from dicomveil.profiles import loading
from dicomveil.profiles.compile import CompiledProfile, compile_profile
from dicomveil.profiles.generalize import Generalization
from dicomveil.profiles.rules import Base, Rule
from dicomveil.standard.options import EXCLUSIVE, Option
from dicomveil.standard.risks import Risk


@dataclass(frozen=True)
class Profile:
    """A named, validated de-identification profile."""

    name: str
    description: str = ""
    source: str = ""
    base: Base = Base.PS315
    options: frozenset[Option] = frozenset()
    rules: tuple[Rule, ...] = ()
    allow: frozenset[Risk] = frozenset()
    keep_private: bool = False
    clean: Replacements = field(default_factory=Replacements)  # free-text cleaner tokens
    # X/Z/U* reference sequences: kept with their UIDs replaced (False), or removed where
    # the IOD does not require them (True: ``references = "remove"``).
    remove_references: bool = False
    # The release gate (``verify = true``): every written file checked by the verifier first.
    verify: bool = False
    # Quasi-identifiers generalised (``[generalize]``: age, dates, size, weight bands).
    generalize: Generalization = field(default_factory=Generalization)
    # The TOML file it was read from (absolute; "" for presets): the audit trail records it,
    # so that the review application can rebuild the profile of a run.
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for group in EXCLUSIVE:
            both = group & self.options
            if len(both) > 1:
                names = " and ".join(sorted(o.value for o in both))
                raise ProfileError(f"options {names} cannot be combined", source=self.name)
        if self.base is Base.COPY and (self.rules or self.options):
            raise ProfileError("a byte-identical copy takes no rules or options", source=self.name)

    @classmethod
    def named(cls, name: str | Path) -> Profile:
        """A preset by name or a TOML profile file by path.

        Parameters
        ----------
        name : str or pathlib.Path
            A preset's name (see :func:`preset_names`) or the path of a ``.toml`` file.

        Returns
        -------
        Profile
            The profile, validated.

        Raises
        ------
        ProfileError
            Unknown name, unreadable file, or an invalid entry (the message names the file
            and the entry).
        """
        return loading.load_profile(name, cls)

    @classmethod
    def from_file(cls, path: str | Path) -> Profile:
        """A TOML profile file (its format: see the module), even when its name is also a
        preset's; otherwise as :meth:`named`.

        Parameters
        ----------
        path : str or pathlib.Path
            The file.
        """
        return loading.load_file(Path(path), (), cls)

    def with_options(self, options: Iterable[str | Option]) -> Profile:
        """The same profile with more options.

        Parameters
        ----------
        options : iterable of str or Option
            Options by name (PS3.15 option names and dicomveil's short names both work).

        Returns
        -------
        Profile
            This profile when nothing is new, else a copy named ``name+option,...``.

        Raises
        ------
        ProfileError
            An unknown option, or options that exclude each other.
        """
        extra = frozenset(Option.parse(o) for o in options)
        if not extra - self.options:
            return self
        names = ",".join(sorted(o.value for o in extra))
        return replace(self, options=self.options | extra, name=f"{self.name}+{names}")

    def compile(self) -> CompiledProfile:
        """The lookups the engine uses (see :func:`dicomveil.profiles.compile.compile_profile`)."""
        return compile_profile(self)

    @property
    def digest(self) -> str:
        """A hash of the compiled content (rules, options, tables): same digest, same output."""
        return self.compile().digest


def load_profile(name_or_path: str | Path) -> Profile:
    """A preset by name, or a TOML profile file by path (see :meth:`Profile.named`)."""
    return Profile.named(name_or_path)


def preset_names() -> tuple[str, ...]:
    """The names of the presets that ship with dicomveil."""
    return loading.preset_names()
