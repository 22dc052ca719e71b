"""Profiles: named presets and custom TOML files, composed and compiled into a lookup."""

from dicomveil.profiles.model import (
    TEMPLATE_FIELDS,
    Base,
    CompiledProfile,
    Profile,
    Rule,
    Target,
    known_tag,
    load_profile,
    preset_names,
    render_template,
)

__all__ = [
    "TEMPLATE_FIELDS",
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
