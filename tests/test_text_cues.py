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
    assert [(s.start, s.end) for s in known.find("to KELLER, D. today")] == [(3, 13)]
    assert ("14, Quarry-Lane", "address") in found
    assert ("BCMC", "institution") in found and ("Birch Creek", "institution") in found
    assert not any(value in ("MRI", "Dana L.") for value, _category in found)
    assert known.find("quarrying and bcmc") == []  # a longer word; an acronym in lower case


@pytest.mark.parametrize(
    ("text", "category", "found"),
    [
        ("Prior hosp no MFT 4471092; ref CP/25/01187", "id", ["MFT 4471092", "CP/25/01187"]),
        ("MMST 19/30, BP 98/60, TR 2000 ms, MDT 02/12/2025", "id", []),
        ("Sturz um 4 Uhr, Zyste bei 2 Uhr, Befund 14.30 Uhr", "time", ["4 Uhr", "14.30 Uhr"]),
        ("since Sunday 12/8; dad on the way; KG 4/5", "date", ["Sunday 12/8"]),
        ("(b. 1994), RDV le mardi 26 mars", "date", ["1994", "mardi 26 mars"]),
        ("fax 630.555.0114 x22 or 1-800-555-0139", "phone", ["630.555.0114 x22", "1-800-555-0139"]),
        (
            "see eintracht-club.example.de for forms; e.g. report.pdf",
            "url",
            ["eintracht-club.example.de"],
        ),
        ("Enseignante au collège Jean-Moulin", "institution", ["collège Jean-Moulin"]),
        ("Suivi au Centre d'imagerie du Prado", "institution", ["Centre d'imagerie du Prado"]),
        ("to Interventional Radiology; Emergency Radiology attending", "institution", []),
        ("SAMU 33 appelé; GRACE score 4", "name", []),
        ("Maman (Aïssatou) injoignable, papa Moussa présent", "name", ["Aïssatou", "Moussa"]),
    ],
)
def test_seen_in_the_tune_sets(text: str, category: str, found: list[str]) -> None:
    assert _found(text, category) == found


def test_a_name_the_file_holds_that_is_an_eponym_is_kept_there() -> None:
    known = Identifiers(names=frozenset({"DOUGLAS^GRACE"}))
    for text in ("pouch of Douglas obliterated", "Douglas pouch free", "GRACE score 120"):
        assert known.find(text) == [], text
    assert [s.category.value for s in known.find("Mrs Douglas called")] == ["name"]


@pytest.mark.parametrize(
    ("name", "text", "cleaned"),
    [
        # joined to other characters (found by black-box tests)
        ("Nakamura^Haruki", "NakamuraLab", "[NAME]Lab"),
        ("Nakamura^Haruki", "HNakamura", "H[NAME]"),
        ("Nakamura^Haruki", "NAKAMURA1_1_1", "[NAME]1_1_1"),
        ("Lee^Ann", "Sleep lab, annual review", "Sleep lab, annual review"),
        # scripts written without spaces between words
        ("ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", "患者 山田太郎 様", "患者 [NAME] 様"),
        ("김희중", "환자 검사 김희중씨", "환자 검사 [NAME]씨"),
        # any case, in Greek and Cyrillic too
        ("Διονυσιος", "Ασθενής ΔΙΟΝΥΣΙΟΣ εξέταση", "Ασθενής [NAME] εξέταση"),
        ("Иванов^Иван", "пациент ИВАНОВ", "пациент [NAME]"),
    ],
)
def test_the_patients_name_however_it_is_joined_or_cased(
    name: str, text: str, cleaned: str
) -> None:
    known = Identifiers(names=frozenset({name}))
    assert TextCleaner().clean(text, known).text == cleaned
