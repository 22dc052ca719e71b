#!/usr/bin/env python3
"""Counts for the independent free-text corpus (dicomveil issue 15).

Usage: python3 count.py            -> prints a Markdown summary of both halves
The parser here is also used by check.py.
"""
import os
import re
from collections import Counter, OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["series", "study", "protocol", "comment", "history", "reason", "sr", "overlay", "gsps"]
CATEGORIES = ["name", "id", "date", "time", "phone", "email", "url", "address", "institution", "age"]
LABEL_RE = re.compile(r"\[\[([A-Za-z]+):(.*?)\]\]")
LANG_OF_PREFIX = {"us": "English (US)", "uk": "English (UK)", "de": "German", "fr": "French"}

# Eponyms (or eponymous parts) whose presence in a must-keep phrase is counted.
EPONYMS = [
    "Agatston", "Alzheimer", "Arnold-Chiari", "Babinski", "Baker", "Bankart", "Bauhin", "Bechterew",
    "Bell's", "Bennett", "Brown-Séquard", "Budd-Chiari", "Chiari", "Child-Pugh", "Colles", "Cooper",
    "Couinaud", "Creutzfeldt-Jakob", "Crohn", "Dandy-Walker", "Dawson", "Deauville", "Douglas", "Evans",
    "Fabry", "Fallot", "Fazekas", "Fisher", "Forestier", "Garden", "Glasgow", "Gleason",
    "Guillain-Barré", "Hampton", "Hill-Sachs", "Hodgkin", "Hoffa", "Hounsfield", "Hunt und Hess",
    "Huntington", "Kerley", "Kienböck", "Klippel-Feil", "Koedam", "Krukenberg", "Lachman", "Lewy",
    "McBurney", "McDonald", "Magendie", "Meckel", "Modic", "Monro", "Morison", "Paget", "Pancoast",
    "Parkinson", "Parsonage-Turner", "Perthes", "Raymond-Roy", "Scheltens", "Scheuermann", "Schmorl",
    "Segond", "Sellink", "Sister Mary Joseph", "Spetzler-Martin", "Tarlov", "Virchow-Robin", "Wells",
    "Wernicke", "Westermark", "Willis", "Lugano",
]
# Ordinary words in must-keep phrases that collide with person names used in this corpus/brief.
COLLISIONS = [
    "Will ", "May ", "Max ", "max ", "Mark ", "frank ", "franche", "rose ", "Petit ", "petit ",
    "petit-", "grâce", "Kleine", "Kleiner", "rein ", " lang", "blanche", "Garden", "Douglas", "Evans",
    "SUVmax",
]


def parse_file(path):
    """Return list of cases; each case: dict(name, line, files=[OrderedDict key->value],
    texts=[dict(kind, raw, text, labels=[(cat, span, start, end)], line)])."""
    cases = []
    cur = None
    mode = None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    errors = []
    for ln, line in enumerate(lines, 1):
        if line.startswith("#"):
            continue
        if line.startswith("@case"):
            m = re.fullmatch(r"@case ([A-Za-z0-9-]+)", line)
            if not m:
                errors.append(f"{ln}: bad @case line")
                continue
            cur = {"name": m.group(1), "line": ln, "files": [OrderedDict()], "texts": []}
            cases.append(cur)
            mode = "attr"
            continue
        if cur is None:
            errors.append(f"{ln}: content before first @case")
            continue
        if line == "@file":
            if mode != "attr":
                errors.append(f"{ln}: @file after @text")
            cur["files"].append(OrderedDict())
            continue
        if line == "@text":
            if mode != "attr":
                errors.append(f"{ln}: duplicate @text")
            mode = "text"
            continue
        if mode == "attr":
            m = re.fullmatch(r"([A-Za-z]+(?:>[A-Za-z]+)*) = (.+)", line)
            if not m:
                errors.append(f"{ln}: bad attribute line {line!r}")
                continue
            key, val = m.group(1), m.group(2)
            d = cur["files"][-1]
            if key in d:
                d[key] = d[key] + "\\" + val
            else:
                d[key] = val
            continue
        # text line
        kind, tab, raw = line.partition("\t")
        if not tab:
            errors.append(f"{ln}: text line without TAB")
            continue
        if kind not in KINDS:
            errors.append(f"{ln}: bad kind {kind!r}")
        labels = []
        out = []
        pos = 0
        for m in LABEL_RE.finditer(raw):
            out.append(raw[pos:m.start()])
            start = sum(len(x) for x in out)
            cat, span = m.group(1), m.group(2)
            labels.append((cat, span, start, start + len(span)))
            out.append(span)
            pos = m.end()
        out.append(raw[pos:])
        text = "".join(out)
        cur["texts"].append({"kind": kind, "raw": raw, "text": text, "labels": labels, "line": ln})
    return cases, errors


def read_mustkeep(path):
    with open(path, encoding="utf-8") as f:
        return [l for l in f.read().split("\n") if l and not l.startswith("#")]


def lang(case_name):
    return LANG_OF_PREFIX.get(case_name.split("-")[0], "?")


def summarize(part):
    cases, _ = parse_file(os.path.join(HERE, part + ".txt"))
    mk = read_mustkeep(os.path.join(HERE, "must-keep-" + part + ".txt"))
    s = {}
    s["cases"] = len(cases)
    s["cases_with_file"] = sum(1 for c in cases if len(c["files"]) > 1)
    s["files"] = sum(len(c["files"]) for c in cases)
    s["lines"] = sum(len(c["texts"]) for c in cases)
    s["lines_by_kind"] = Counter(t["kind"] for c in cases for t in c["texts"])
    s["lines_by_lang"] = Counter()
    s["cases_by_lang"] = Counter()
    for c in cases:
        s["lines_by_lang"][lang(c["name"])] += len(c["texts"])
        s["cases_by_lang"][lang(c["name"])] += 1
    s["clean_lines"] = sum(1 for c in cases for t in c["texts"] if not t["labels"])
    up, lo = Counter(), Counter()
    for c in cases:
        for t in c["texts"]:
            for cat, span, _, _ in t["labels"]:
                (up if cat.isupper() else lo)[cat.lower()] += 1
    s["upper"], s["lower"] = up, lo
    s["mustkeep"] = len(mk)
    s["mk_eponym"] = sum(1 for p in mk if any(e in p for e in EPONYMS))
    s["mk_collision"] = sum(1 for p in mk if any(w in p + " " for w in COLLISIONS))
    s["mk_eponym_or_collision"] = sum(
        1 for p in mk if any(e in p for e in EPONYMS) or any(w in p + " " for w in COLLISIONS))
    return s


def markdown(parts=("tune", "heldout")):
    S = {p: summarize(p) for p in parts}
    rows = []
    def row(label, f):
        vals = [f(S[p]) for p in parts]
        tot = sum(vals) if all(isinstance(v, int) for v in vals) else ""
        rows.append(f"| {label} | " + " | ".join(str(v) for v in vals) + f" | {tot} |")
    rows.append("| | " + " | ".join(parts) + " | total |")
    rows.append("|---|" + "---|" * (len(parts) + 1))
    row("cases (patients)", lambda s: s["cases"])
    row("cases with @file blocks", lambda s: s["cases_with_file"])
    row("files (header sets)", lambda s: s["files"])
    row("text lines (fields)", lambda s: s["lines"])
    row("lines without any label", lambda s: s["clean_lines"])
    for L in ["English (US)", "English (UK)", "German", "French"]:
        row(f"lines in {L} cases", lambda s, L=L: s["lines_by_lang"][L])
    for L in ["English (US)", "English (UK)", "German", "French"]:
        row(f"cases {L}", lambda s, L=L: s["cases_by_lang"][L])
    for k in KINDS:
        row(f"lines kind={k}", lambda s, k=k: s["lines_by_kind"][k])
    rows.append("| share of lines: English / German / French | " + " | ".join(
        "{:.0f}% / {:.0f}% / {:.0f}%".format(*(100 * x / S[p]["lines"] for x in (
            S[p]["lines_by_lang"]["English (US)"] + S[p]["lines_by_lang"]["English (UK)"],
            S[p]["lines_by_lang"]["German"], S[p]["lines_by_lang"]["French"]))) for p in parts) + " | |")
    row("labelled spans, total", lambda s: sum(s["upper"].values()) + sum(s["lower"].values()))
    row("UPPER (header-held) spans", lambda s: sum(s["upper"].values()))
    row("lower (context-free) spans", lambda s: sum(s["lower"].values()))
    for cat in CATEGORIES:
        row(f"{cat}: UPPER", lambda s, cat=cat: s["upper"][cat])
        row(f"{cat}: lower", lambda s, cat=cat: s["lower"][cat])
    row("must-keep phrases", lambda s: s["mustkeep"])
    row("must-keep with an eponym", lambda s: s["mk_eponym"])
    row("must-keep with a name-colliding word", lambda s: s["mk_collision"])
    row("must-keep with eponym or colliding word", lambda s: s["mk_eponym_or_collision"])
    return "\n".join(rows), S


if __name__ == "__main__":
    md, _ = markdown()
    print(md)
