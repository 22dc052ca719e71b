"""Profiles: named presets and custom TOML files, composed and compiled into a lookup.

- :mod:`~dicomveil.profiles.model`: :class:`Profile` (and the TOML format);
- :mod:`~dicomveil.profiles.rules`: bases, rule targets, rules, value templates;
- :mod:`~dicomveil.profiles.loading`: presets and files, validated (pydantic);
- :mod:`~dicomveil.profiles.compile`: :class:`CompiledProfile`, the engine's lookups;
- ``presets/*.toml``: the presets; ``identity.toml``: what stands for the patient.
"""

from dicomveil.profiles.compile import TIME_OF_DAY, CompiledProfile
from dicomveil.profiles.model import Profile, load_profile, preset_names
from dicomveil.profiles.rules import TEMPLATE_FIELDS, Base, Rule, Target, known_tag, render_template

__all__ = [
    "TEMPLATE_FIELDS",
    "TIME_OF_DAY",
    "Base",
    "CompiledProfile",
    "Profile",
    "Rule",
    "Target",
    "known_tag",
    "load_profile",
    "preset_names",
    "render_template",
]
