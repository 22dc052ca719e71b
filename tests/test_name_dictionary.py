"""The name dictionary of the free-text cleaner (issue 15): names no cue points at and no file
holds, found by the first names and surnames of ``data/names.json`` (made from Faker's
person providers by ``tools/build_name_lists.py``), with the guards that keep clinical text
(eponyms, ordinary words, the cleaner's vocabulary) and a profile's own settings."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from dicomveil import Profile
from dicomveil.cleaners.text import Replacements, TextCleaner
from dicomveil.errors import ProfileError

ROOT = Path(__file__).resolve().parents[1]
CLEANER = TextCleaner()


def _names(text: str, cleaner: TextCleaner = CLEANER) -> list[str]:
    return [text[s.start : s.end] for s in cleaner.find(text) if s.category.value == "name"]


def test_the_lists_say_where_they_come_from() -> None:
    raw = json.loads((files("dicomveil.cleaners.text") / "data" / "names.json").read_bytes())
    assert "Faker" in raw["source"]["names"] and "MIT" in raw["source"]["names"]
    assert raw["source"]["generated_by"] == "tools/build_name_lists.py"
    for key in ("first_names", "surnames", "ambiguous"):
        assert raw[key] == sorted(set(raw[key])), key
    assert len(raw["first_names"]) > 2000 and len(raw["surnames"]) > 2000
    assert {"nadia", "klaus", "camille", "priya"} <= set(raw["first_names"])
    assert {"grace", "rose", "pierre"} <= set(raw["ambiguous"])


@pytest.mark.skipif(
    importlib.util.find_spec("faker") is None or not Path("/usr/share/hunspell/fr.dic").exists(),
    reason="regenerating the lists needs Faker and the Hunspell dictionaries (tool-time only)",
)
def test_the_committed_lists_are_what_the_tool_makes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_name_lists.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lives with daughter Nadia, who drives her", ["Nadia"]),
        ("Begleitung durch Ehemann Klaus", ["Klaus"]),
        ("sa fille Camille l'accompagne", ["Camille"]),
        ("scanned by Priya, repeated DWI", ["Priya"]),
        ("discussed with Hartmann on the phone", ["Hartmann"]),
        ("call Grace if the patient is late", ["Grace"]),
        ("Nadia Okafor accompanied the patient", ["Nadia Okafor"]),
    ],
)
def test_names_nothing_cues_are_found(text: str, expected: list[str]) -> None:
    assert _names(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "known Parkinson's disease, follow-up",
        "circle of Willis normal",
        "Morbus Crohn, MR enterography",
        "maladie de Parkinson, bilan",
        "Guillain-Barré syndrome suspected",
        "Will review with prior",
        "Grace period for the protocol",
        "Mark the lesion on the T2",
        "Glasgow Coma Scale 14",
        "AX T2 FLAIR FS",
        "MR BRAIN W/WO CONTRAST MARK",
        "Rose Bengal",
    ],
)
def test_clinical_text_is_kept(text: str) -> None:
    assert _names(text) == []


def test_a_profile_turns_it_off_or_adds_words(tmp_path: Path) -> None:
    off = TextCleaner(Replacements(name_dictionary=False))
    assert _names("lives with daughter Nadia", off) == []
    own = TextCleaner(Replacements(names=("Zorbalind",), not_names=("Nadia",)))
    assert _names("Zorbalind came; daughter Nadia waited", own) == ["Zorbalind"]
    path = tmp_path / "words.toml"
    path.write_text(
        'extends = "ps3.15-basic"\noptions = ["clean-descriptors"]\n'
        '[clean]\nname_dictionary = false\nnot_names = ["Gamma"]\n',
        encoding="utf-8",
    )
    profile = Profile.from_file(path)
    assert profile.clean.name_dictionary is False and profile.clean.not_names == ("Gamma",)
    assert (
        profile.digest != Profile.named("ps3.15-basic").with_options(["clean-descriptors"]).digest
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[clean]\nname_dictionary = 1", r"clean\.name_dictionary: must be true or false"),
        ('[clean]\nnames = "Zorro"', r"clean\.names: must be a list of words"),
        ("[clean]\nnot_names = [1]", r"clean\.not_names: must be a list of words"),
    ],
)
def test_bad_settings_are_load_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ProfileError, match=message):
        Profile.from_file(path)
