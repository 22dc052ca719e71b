#!/usr/bin/env python3
"""Generate dicomveil's compact package tables from the shared reference facts.

Usage::

    python tools/generate_tables.py [--reference DIR] [--check]

Reads the CSV files described in ``<reference>/README.md`` and writes, into
``src/dicomveil/standard/data/``:

- ``ps3.15-e1-1.json``: DICOM PS3.15 2026d Table E.1-1 (Application Level
  Confidentiality Profile Attributes);
- ``ps3.15-safe-private.json``: DICOM PS3.15 2026d Table E.3.10-1 (Safe Private
  Attributes);
- ``iod-types.json.gz``: SOP Class -> IOD, and the strictest Type of every attribute
  path, per IOD, whose tag a compound code may need (see :func:`typed_tags`);
- ``tcia-private.json``: TCIA (Posda) private tag dispositions, top-level elements.

Output is deterministic (stable order, sorted keys, trailing newline, gzip mtime 0).
With ``--check`` nothing is written: the tables are regenerated in memory and compared
with the committed files; the exit status is 1 if any differs, 0 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE: Final = REPO.parent / "shared" / "reference"
DATA_DIR: Final = REPO / "src" / "dicomveil" / "standard" / "data"
PROVENANCE_JSON: Final = "provenance.json"
GENERATED_BY: Final = "tools/generate_tables.py"

E1_1_CSV: Final = "ps3.15-table-e1-1.csv"
SAFE_PRIVATE_CSV: Final = "ps3.15-safe-private.csv"
IOD_TYPES_CSV: Final = "iod-attribute-types.csv"
SOP_CLASS_CSV: Final = "sop-class-to-iod.csv"
TCIA_CSV: Final = "tcia-private-tags.csv"

E1_1_JSON: Final = "ps3.15-e1-1.json"
SAFE_PRIVATE_JSON: Final = "ps3.15-safe-private.json"
IOD_TYPES_JSON_GZ: Final = "iod-types.json.gz"
TCIA_JSON: Final = "tcia-private.json"

EDITION: Final = "2026d"
IOD_EDITION: Final = "2026d (E.1-1); PS3.3 2026b + 2026d Patient/Patient Study supplement"
TCIA_EDITION: Final = (
    "UAMS-DBMI/PosdaTools posda_phi_simple element_seen, "
    "commit e37145943e591c5cdc4bcb7dddc3354315372553 (2023-10-09)"
)
TCIA_LICENSE: Final = (
    "Apache-2.0; derived from UAMS-DBMI/PosdaTools, "
    "(c) 2022 The Board of Trustees of the University of Arkansas"
)

E1_1_FIXED_COLUMNS: Final = ("tag", "name", "keyword", "in_std_comp_iod", "basic_profile")
E1_1_LAST_COLUMN: Final = "retired"
BASIC_CODES: Final = frozenset({"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})
OPTION_CODES: Final = frozenset({"K", "C"})
PATTERN_TAGS: Final[Mapping[str, str]] = {
    "50xx,xxxx": "50xxxxxx",
    "60xx,3000": "60xx3000",
    "60xx,4000": "60xx4000",
}
PRIVATE_PREFIX: Final = "gggg,eeee"
TYPE_ORDER: Final = ("1", "1C", "2", "2C", "3")  # strictest first
DISPOSITIONS: Final[Mapping[str, str]] = {
    "keep": "keep",
    "remove": "remove",
    "hash": "hash",
    "date-shift": "date-shift",
    "date-shift-integer": "date-shift-integer",
    "not-applicable": "remove",
    "": "remove",
}
# most protective first
DISPOSITION_ORDER: Final = ("remove", "hash", "date-shift-integer", "date-shift", "keep")

_TAG_RE: Final = re.compile(r"[0-9A-F]{4},[0-9A-F]{4}")
_PRIVATE_TAG_RE: Final = re.compile(r"([0-9A-F]{4}),xx([0-9A-F]{2})")
_HEX4_RE: Final = re.compile(r"[0-9A-F]{4}")
_HEX2_RE: Final = re.compile(r"[0-9A-F]{2}")


class ReferenceDataError(ValueError):
    """The reference data does not have the expected shape."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_csv(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _header_columns(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh))


def _header(table: str, edition: str, reference: Path, source: str) -> dict[str, object]:
    return {
        "table": table,
        "edition": edition,
        "source_file": source,
        "source_sha256": _sha256(reference / source),
        "generated_by": GENERATED_BY,
    }


def _yes_no(value: str, where: str) -> bool:
    if value == "Y":
        return True
    if value == "N":
        return False
    raise ReferenceDataError(f"{where}: expected Y or N, got {value!r}")


def e1_1_tag(raw: str) -> str:
    """Normalise a Table E.1-1 tag: ``0010,0010`` -> ``00100010``; patterns as documented."""
    if _TAG_RE.fullmatch(raw):
        return raw.replace(",", "")
    if raw in PATTERN_TAGS:
        return PATTERN_TAGS[raw]
    if raw.startswith(PRIVATE_PREFIX) and "odd" in raw:
        return "private"
    raise ReferenceDataError(f"unexpected Table E.1-1 tag {raw!r}")


def e1_1_option_columns(reference: Path) -> list[str]:
    columns = _header_columns(reference / E1_1_CSV)
    if tuple(columns[:5]) != E1_1_FIXED_COLUMNS or columns[-1] != E1_1_LAST_COLUMN:
        raise ReferenceDataError(f"{E1_1_CSV}: unexpected columns {columns}")
    options = columns[5:-1]
    if len(options) != 10:
        raise ReferenceDataError(f"{E1_1_CSV}: expected 10 option columns, got {options}")
    return options


def build_e1_1(reference: Path) -> dict[str, object]:
    options = e1_1_option_columns(reference)
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    for n, rec in enumerate(_read_csv(reference / E1_1_CSV), start=2):
        where = f"{E1_1_CSV}:{n}"
        tag = e1_1_tag(rec["tag"])
        if tag in seen:
            raise ReferenceDataError(f"{where}: duplicate tag {tag}")
        seen.add(tag)
        basic = rec["basic_profile"]
        if basic not in BASIC_CODES:
            raise ReferenceDataError(f"{where}: unexpected Basic Profile code {basic!r}")
        row_options: dict[str, str] = {}
        for column in options:
            code = rec[column]
            if code:
                if code not in OPTION_CODES:
                    raise ReferenceDataError(f"{where}: unexpected {column} code {code!r}")
                row_options[column] = code
        rows.append(
            {
                "tag": tag,
                "keyword": rec["keyword"],
                "name": rec["name"],
                "basic": basic,
                "options": row_options,
                "in_std_comp_iod": _yes_no(rec["in_std_comp_iod"], where),
                "retired": _yes_no(rec["retired"], where),
            }
        )
    table = _header("PS3.15 Table E.1-1", EDITION, reference, E1_1_CSV)
    table["option_columns"] = options
    table["rows"] = rows
    return table


def build_safe_private(reference: Path) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    for n, rec in enumerate(_read_csv(reference / SAFE_PRIVATE_CSV), start=2):
        match = _PRIVATE_TAG_RE.fullmatch(rec["tag"])
        if match is None or not rec["private_creator"]:
            raise ReferenceDataError(f"{SAFE_PRIVATE_CSV}:{n}: unexpected row {rec}")
        rows.append(
            {
                "creator": rec["private_creator"],
                "group": match.group(1),
                "offset": match.group(2),
                "vr": rec["vr"],
                "vm": rec["vm"],
                "meaning": rec["meaning"],
            }
        )
    table = _header("PS3.15 Table E.3.10-1", EDITION, reference, SAFE_PRIVATE_CSV)
    table["rows"] = rows
    return table


# Types the reference extraction lacks, each with its source; a row of the CSV wins.
TYPE_SUPPLEMENT: Final[Mapping[tuple[str, str], tuple[str, str]]] = {
    ("Color Palette", "ContentDescription"): (
        "1",
        "PS3.3 A.58 Color Palette IOD, Color Palette Definition Module: the Content "
        "Identification Macro with Content Description required (dicom3tools' dciodvfy "
        "module definition: Type 1); the extraction lists none of the macro's attributes",
    ),
    ("Color Palette", "AlternateContentDescriptionSequence>ContentDescription"): (
        "1",
        "PS3.3 Table 10-12 Content Identification Macro: Alternate Content Description "
        "Sequence items, Content Description Type 1",
    ),
}


def compound_tags(reference: Path) -> set[str]:
    """Single tags of Table E.1-1 whose Basic Profile code is compound (contains ``/``)."""
    return {
        e1_1_tag(rec["tag"])
        for rec in _read_csv(reference / E1_1_CSV)
        if "/" in rec["basic_profile"] and _TAG_RE.fullmatch(rec["tag"])
    }


def typed_tags(reference: Path) -> set[str]:
    """The tags whose Type per IOD the package needs: those with a compound Basic Profile
    code in Table E.1-1, the free texts dicomveil empties beyond the table as Z/D
    (``dicomveil.cleaners.structured.EXTRA_TEXT_TAGS``), and those a bundled preset's rule gives a
    compound code (``src/dicomveil/profiles/presets/*.toml``). A custom profile's compound code on
    any other tag takes its first (most protective) action."""
    import tomllib

    from pydicom.datadict import tag_for_keyword

    from dicomveil.cleaners.structured import EXTRA_TEXT_TAGS

    tags = compound_tags(reference)
    tags.update(f"{tag:08X}" for extras in EXTRA_TEXT_TAGS.values() for tag, _ in extras)
    for preset in sorted((REPO / "src" / "dicomveil" / "profiles").glob("*.toml")):
        for rule in tomllib.loads(preset.read_text(encoding="utf-8")).get("rules", []):
            keyword = rule.get("keyword")
            if "/" in str(rule.get("action", "")) and keyword:
                tag = tag_for_keyword(keyword)
                if tag is None:
                    raise ReferenceDataError(f"{preset.name}: unknown keyword {keyword!r}")
                tags.add(f"{tag:08X}")
    return tags


def build_iod_types(reference: Path) -> dict[str, object]:
    sop_class_to_iod: dict[str, str] = {}
    for n, rec in enumerate(_read_csv(reference / SOP_CLASS_CSV), start=2):
        uid, iod = rec["sop_class_uid"], rec["iod"]
        if not uid or not iod or sop_class_to_iod.get(uid, iod) != iod:
            raise ReferenceDataError(f"{SOP_CLASS_CSV}:{n}: unexpected row {rec}")
        sop_class_to_iod[uid] = iod

    wanted = typed_tags(reference)
    required = compound_tags(reference)
    rank = {t: i for i, t in enumerate(TYPE_ORDER)}
    types: dict[str, dict[str, str]] = {}
    found: set[str] = set()
    for n, rec in enumerate(_read_csv(reference / IOD_TYPES_CSV), start=2):
        raw_tag = rec["tag"]
        tag = raw_tag.replace(",", "") if _TAG_RE.fullmatch(raw_tag) else raw_tag
        if tag not in wanted:
            continue
        type_ = rec["type"]
        if type_ not in rank or not rec["iod"] or not rec["path"]:
            raise ReferenceDataError(f"{IOD_TYPES_CSV}:{n}: unexpected row {rec}")
        found.add(tag)
        paths = types.setdefault(rec["iod"], {})
        old = paths.get(rec["path"])
        if old is None or rank[type_] < rank[old]:
            paths[rec["path"]] = type_
    for (iod, path), (type_, _why) in TYPE_SUPPLEMENT.items():
        types.setdefault(iod, {}).setdefault(path, type_)
    missing = required - found
    if missing:
        raise ReferenceDataError(
            f"{IOD_TYPES_CSV}: compound-code tags in no row: {sorted(missing)}"
        )

    table = _header(
        "PS3.3 attribute Types per IOD for the compound codes of PS3.15 Table E.1-1 and of "
        "the presets",
        IOD_EDITION,
        reference,
        IOD_TYPES_CSV,
    )
    table["additional_sources"] = {
        name: _sha256(reference / name) for name in (E1_1_CSV, SOP_CLASS_CSV)
    }
    table["type_order"] = list(TYPE_ORDER)
    table["sop_class_to_iod"] = sop_class_to_iod
    table["types"] = types
    return table


def build_tcia(reference: Path) -> dict[str, object]:
    rank = {d: i for i, d in enumerate(DISPOSITION_ORDER)}
    best: dict[tuple[str, str, str], str] = {}
    for n, rec in enumerate(_read_csv(reference / TCIA_CSV), start=2):
        if rec["parent_path"] or rec["standard_tag"]:
            continue
        creator = rec["private_creator"].rstrip(" ")
        if not creator:
            continue
        group, offset = rec["group"].upper(), rec["element_offset"].upper()
        raw = rec["disposition"]
        if not _HEX4_RE.fullmatch(group) or not _HEX2_RE.fullmatch(offset):
            raise ReferenceDataError(f"{TCIA_CSV}:{n}: unexpected tag in {rec}")
        if raw not in DISPOSITIONS:
            raise ReferenceDataError(f"{TCIA_CSV}:{n}: unexpected disposition {raw!r}")
        disposition = DISPOSITIONS[raw]
        key = (creator, group, offset)
        old = best.get(key)
        if old is None or rank[disposition] < rank[old]:
            best[key] = disposition
    rows = [
        {"creator": c, "group": g, "offset": o, "disposition": best[(c, g, o)]}
        for c, g, o in sorted(best)
    ]
    table = _header(
        "TCIA private tag dispositions (Posda element_seen)", TCIA_EDITION, reference, TCIA_CSV
    )
    table["license"] = TCIA_LICENSE
    table["dispositions"] = list(DISPOSITION_ORDER)
    table["rows"] = rows
    return table


def _dumps_compact(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def render_json(table: Mapping[str, object]) -> bytes:
    """One top-level key per line; list values (the rows) one element per line."""
    parts: list[str] = []
    for key in sorted(table):
        value = table[key]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"    {_dumps_compact(item)}" for item in value)
            rendered = f"[\n{items}\n  ]"
        else:
            rendered = _dumps_compact(value)
        parts.append(f"  {json.dumps(key)}: {rendered}")
    return ("{\n" + ",\n".join(parts) + "\n}\n").encode("utf-8")


def render_json_gz(table: Mapping[str, object]) -> bytes:
    text = json.dumps(table, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def generate(reference: Path) -> dict[str, bytes]:
    """Return ``{file name: bytes}`` for every generated data file."""
    for name in (E1_1_CSV, SAFE_PRIVATE_CSV, IOD_TYPES_CSV, SOP_CLASS_CSV, TCIA_CSV):
        if not (reference / name).is_file():
            raise ReferenceDataError(f"{reference / name} is missing")
    files = {
        E1_1_JSON: render_json(build_e1_1(reference)),
        SAFE_PRIVATE_JSON: render_json(build_safe_private(reference)),
        IOD_TYPES_JSON_GZ: render_json_gz(build_iod_types(reference)),
        TCIA_JSON: render_json(build_tcia(reference)),
    }
    files[PROVENANCE_JSON] = render_json(provenance(files, reference))
    return files


def content_sha256(name: str, data: bytes) -> str:
    """The sha256 of a data file's content (a .gz file: of its decompressed content)."""
    return hashlib.sha256(gzip.decompress(data) if name.endswith(".gz") else data).hexdigest()


def provenance(files: Mapping[str, bytes], reference: Path) -> dict[str, object]:
    """Each generated file's content sha256 and the sha256 of every reference file read:
    a clone without the reference folder still detects a table edited by hand
    (tests/test_tables.py), and one with it sees which reference changed."""
    sources = (E1_1_CSV, SAFE_PRIVATE_CSV, IOD_TYPES_CSV, SOP_CLASS_CSV, TCIA_CSV)
    return {
        "generated_by": "tools/generate_tables.py",
        "files": {name: content_sha256(name, data) for name, data in sorted(files.items())},
        "sources": {name: _sha256(reference / name) for name in sources},
    }


def _same(name: str, new: bytes, old: bytes) -> bool:
    if name.endswith(".gz"):
        # Compare the content: compressed bytes may differ between zlib builds.
        try:
            return gzip.decompress(new) == gzip.decompress(old)
        except (OSError, EOFError):
            return False
    return new == old


def check(files: Mapping[str, bytes], data_dir: Path) -> list[str]:
    """Names of the files in ``data_dir`` that are missing or differ from ``files``."""
    stale: list[str] = []
    for name, content in files.items():
        path = data_dir / name
        if not path.is_file() or not _same(name, content, path.read_bytes()):
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--reference",
        type=Path,
        default=DEFAULT_REFERENCE,
        help=f"directory holding the reference CSV files (default: {DEFAULT_REFERENCE})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed tables differ from the regenerated ones",
    )
    args = parser.parse_args(argv)
    reference: Path = args.reference
    try:
        files = generate(reference)
    except ReferenceDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = check(files, DATA_DIR)
        for name in stale:
            print(f"{DATA_DIR / name} differs from the tables generated from {reference}")
        return 1 if stale else 0
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (DATA_DIR / name).write_bytes(content)
        print(f"wrote {DATA_DIR / name} ({len(content)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
