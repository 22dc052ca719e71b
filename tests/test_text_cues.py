"""Free text (issue 15, seventh session): names after a relative, a role or an alias in no
list, a patient's bed or room, places after "at"/"from"/"chez", institutions joined by "&";
and the patient's known numbers and phone numbers found without a pattern compiled for them.
All data invented."""

from __future__ import annotations

import pytest

from dicomveil.cleaners.text import Identifiers, TextCleaner

CLEANER = TextCleaner()


def _found(text: str, category: str, known: Identifiers | None = None) -> list[str]:
    return [text[s.start : s.end] for s in CLEANER.find(text, known) if s.category == category]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Husband Quang drove her home.", ["Quang"]),
        ("Interpreter Oanh on the phone.", ["Oanh"]),
        ("Dolmetscherin Aysel anwesend.", ["Aysel"]),
        ('Prefers to be called "Bibi".', ["Bibi"]),
        ("Fils Xolani : appeler le soir.", ["Xolani"]),
        ("Mutter Mammakarzinom, Vater gesund.", []),  # a disease, not a name
        ("Tochter Begleitung erwünscht.", []),
        ("Husband present, consent signed.", []),
    ],
)
def test_a_person_cue_makes_any_capitalised_word_a_name(text: str, names: list[str]) -> None:
    assert _found(text, "name") == names


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("Return pt to ICU bed 7 after the scan.", ["7"]),
        ("Pat. liegt in Zimmer 218, liegend.", ["218"]),
        ("Patiente en box 3, surveillance.", ["3"]),
        ("Family in waiting room 2.", []),
    ],
)
def test_the_bed_or_room_of_the_patient_is_an_id(text: str, ids: list[str]) -> None:
    assert _found(text, "id") == ids


@pytest.mark.parametrize(
    ("text", "places"),
    [
        ("Seen at Larkfield Grange last week.", ["Larkfield Grange"]),
        ("Works at Dunmore Joinery & Roofing since 2019.", ["Dunmore Joinery & Roofing"]),
        ("Prior films from Quarrytown Learning Center reviewed.", ["Quarrytown Learning Center"]),
        ("Routine follow-up at CT Head protocol.", []),  # acronyms name no place
        ("Referred to Spine Surgery.", []),
    ],
)
def test_places_without_a_file_naming_them(text: str, places: list[str]) -> None:
    assert _found(text, "institution") == places


def test_the_patients_numbers_however_grouped() -> None:
    known = Identifiers(ids=frozenset({"485-773-6201"}), phones=frozenset({"+1 555 204 8861"}))
    text = "MRN 485 773 6201; call (555) 204-8861 or +1.555.204.8861, not 555 204 8862"
    found = [(text[s.start : s.end], s.category.value) for s in known.find(text)]
    assert ("485 773 6201", "id") in found
    phones = [value for value, category in found if category == "phone"]
    assert any("204-8861" in p for p in phones) and any("204.8861" in p for p in phones)
    assert not any("8862" in p for p in phones)
    assert known.find("A485773620199 stays") == []  # inside a longer word


def test_the_patients_phrases_acronyms_and_initials() -> None:
    known = Identifiers(
        names=frozenset({"KELLER^DANA"}),
        addresses=frozenset({"14 Quarry Lane, Dunmore"}),
        institutions=frozenset({"Birch Creek Medical Center", "Mercy Regional Imaging"}),
    )
    text = "Dana K. lives at 14, Quarry-Lane; seen at BCMC and Birch Creek; MRI today; Dana L."
    found = [(text[s.start : s.end], s.category.value) for s in known.find(text)]
    assert ("Dana K.", "name") in found and ("Dana", "name") in found
    assert ("14, Quarry-Lane", "address") in found
    assert ("BCMC", "institution") in found and ("Birch Creek", "institution") in found
    assert not any(value in ("MRI", "Dana L.") for value, _category in found)
    assert known.find("quarrying and bcmc") == []  # a longer word; an acronym in lower case
