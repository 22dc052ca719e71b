#!/usr/bin/env python3
"""Generate the person-name lists of dicomveil's free-text cleaner from openly licensed data.

Usage::

    pip install 'Faker==40.63.0'          # a tool-time input only, never a runtime dependency
    apt-get install hunspell-en-us hunspell-en-gb hunspell-de-de hunspell-fr-classical
    python tools/build_name_lists.py [--check]

Writes ``src/dicomveil/cleaners/text/data/names.json``:

- ``first_names`` and ``surnames``: the given names and family names of Faker's person
  providers for the locales dicomveil's cleaner serves (English: en_US, en_GB, en_IE;
  German: de_DE, de_AT, de_CH; French: fr_FR, fr_BE, fr_CA, fr_CH) and for the lands many of
  their patients' names come from (en_IN, it_IT, es_ES, pt_PT, pl_PL, tr_TR, nl_NL, en_NZ,
  ga_IE, yo_NG, ig_NG, sw, zu_ZA), folded
  (lower case, without accents, as the cleaner compares words), of at least 3 letters;
- ``ambiguous``: the names among them that are also an ordinary word of English, German or
  French (``will``, ``grace``, ``rose``, ``pierre``, ``klein``): the lower-case entries of
  the Hunspell dictionaries installed by the Debian packages above. The cleaner takes those
  as names only where a cue says so (a relative: "daughter Grace"; a preposition after a
  verb of contact: "discussed with Will"). The dictionaries themselves are not shipped:
  only which names they make ambiguous;
- ``source``: the package, version and licence of each input, and this script.

Faker is MIT-licensed (https://github.com/joke2k/faker); its person providers list names,
not people. Output is deterministic (sorted, one name per line in the JSON arrays). With
``--check`` nothing is written: the file is generated in memory and compared with the
committed one (exit status 1 when it differs or an input is missing).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import unicodedata
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent
OUTPUT: Final = REPO / "src" / "dicomveil" / "cleaners" / "text" / "data" / "names.json"
FAKER_VERSION: Final = "40.63.0"
LOCALES: Final = (
    "en_US",
    "en_GB",
    "en_IE",
    "de_DE",
    "de_AT",
    "de_CH",
    "fr_FR",
    "fr_BE",
    "fr_CA",
    "fr_CH",
    # Patients of hospitals in those countries also bear the names of other lands (in
    # Latin script): India, Italy, Spain, Portugal, Poland, Turkey, the Netherlands, New
    # Zealand, Ireland (Irish), Nigeria (Yoruba, Igbo), East Africa (Swahili), South Africa.
    "en_IN",
    "it_IT",
    "es_ES",
    "pt_PT",
    "pl_PL",
    "tr_TR",
    "nl_NL",
    "en_NZ",
    "ga_IE",
    "yo_NG",
    "ig_NG",
    "sw",
    "zu_ZA",
)
HUNSPELL: Final = Path("/usr/share/hunspell")
DICTIONARIES: Final = {
    "en_US.dic": "hunspell-en-us (SCOWL, BSD-like licence)",
    "en_GB.dic": "hunspell-en-gb (SCOWL, LGPL/BSD-like licence)",
    "de_DE.dic": "hunspell-de-de (igerman98, GPL-2/GPL-3/OASIS-0.1)",
    "fr.dic": "hunspell-fr-classical (Dicollecte, MPL-2.0)",
}
MIN_LETTERS: Final = 3


def fold(text: str) -> str:
    """Lower case without accents (as :func:`dicomveil.cleaners.text.fold`, one character
    for one)."""
    out = []
    for char in text:
        base = unicodedata.normalize("NFD", char)[:1] or char
        low = base.lower()
        out.append(low if len(low) == 1 else base)
    return "".join(out)


def _names(attribute: str) -> set[str]:
    found: set[str] = set()
    for locale in LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for name in getattr(provider, attribute, ()):
            for part in str(name).replace("-", " ").split():
                word = fold(part.strip(".'"))
                if len(word) >= MIN_LETTERS and word.isalpha():
                    found.add(word)
    return found


def _words(path: Path) -> set[str]:
    """The lower-case entries of a Hunspell dictionary (ordinary words, not proper names)."""
    words: set[str] = set()
    with path.open(encoding="utf-8", errors="replace") as fh:
        next(fh, None)  # the entry count
        for line in fh:
            word = line.split("/", 1)[0].split("\t", 1)[0].strip()
            if word and word[0].islower() and word.isalpha():
                words.add(fold(word))
    return words


def build() -> dict[str, object]:
    try:
        faker = version("faker")
    except PackageNotFoundError:
        raise SystemExit(f"Faker is not installed: pip install 'Faker=={FAKER_VERSION}'") from None
    if faker != FAKER_VERSION:
        raise SystemExit(f"Faker {faker} is installed; the lists are made from {FAKER_VERSION}")
    missing = [name for name in DICTIONARIES if not (HUNSPELL / name).is_file()]
    if missing:
        raise SystemExit(f"Hunspell dictionaries missing in {HUNSPELL}: {', '.join(missing)}")
    first = _names("first_names")
    last = _names("last_names")
    words: set[str] = set()
    for name in DICTIONARIES:
        words |= _words(HUNSPELL / name)
    return {
        "source": {
            "generated_by": "tools/build_name_lists.py",
            "names": f"Faker {FAKER_VERSION} (MIT licence), faker.providers.person of "
            + ", ".join(LOCALES),
            "ambiguous": "names that are lower-case entries of: "
            + "; ".join(f"{k} from {v}" for k, v in DICTIONARIES.items()),
        },
        "first_names": sorted(first),
        "surnames": sorted(last),
        "ambiguous": sorted((first | last) & words),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    text = json.dumps(build(), ensure_ascii=False, indent=0, sort_keys=True) + "\n"
    if args.check:
        same = OUTPUT.is_file() and OUTPUT.read_text(encoding="utf-8") == text
        print("names.json is up to date" if same else "names.json differs: regenerate it")
        return 0 if same else 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
