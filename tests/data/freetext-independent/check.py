#!/usr/bin/env python3
"""Validate the independent free-text corpus (dicomveil issue 15).

Checks: structure and label syntax; every UPPER label's value is held (in some written
form) by an attribute of one of the case's files, every lower-case label's value is not;
must-keep phrases occur in their half and never overlap a labelled span; minimum counts.
Also prints review hints (header name parts appearing unlabelled in a case's texts).
Exit status 1 on any error.
"""
import os
import re
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from count import parse_file, read_mustkeep, summarize, CATEGORIES, HERE  # noqa: E402

PN_KEYS = {
    "PatientName", "OtherPatientNames", "PatientMotherBirthName", "ReferringPhysicianName",
    "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician",
    "ScheduledPerformingPhysicianName", "PhysiciansOfRecord", "ConsultingPhysicianName",
    "ResponsiblePerson",
}
STOP = {"the", "of", "and", "de", "la", "le", "les", "des", "du", "l", "d", "et", "am", "im", "an",
        "der", "die", "das", "a"}
MONTHS = {}
for i, names in enumerate([
    "january jan janvier januar jänner",
    "february feb fevrier février februar",
    "march mar mars märz marz",
    "april apr avril",
    "may mai",
    "june jun juin juni",
    "july jul juillet juli",
    "august aug aout août",
    "september sep sept septembre",
    "october oct octobre oktober okt",
    "november nov novembre",
    "december dec decembre décembre dezember dez",
], 1):
    for n in names.split():
        MONTHS[n] = i


def fold(s):
    s = s.replace("ß", "ss").replace("ł", "l").replace("Ł", "L")
    s = unicodedata.normalize("NFKD", s)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    return s.lower()


def values(files, pred=lambda k: True):
    out = []
    for d in files:
        for k, v in d.items():
            key = k.split(">")[-1]
            if pred(key):
                out.extend((key, x) for x in v.split("\\"))
    return out


# ---------- names ----------
def name_words(files):
    words = set()
    for _, v in values(files, lambda k: k in PN_KEYS):
        for comp in v.split("^"):
            for w in fold(comp).split():
                w = w.strip(".")
                if not w:
                    continue
                words.add(w)
                for p in w.split("-"):
                    if p:
                        words.add(p)
    return words


def name_tokens(span):
    return [t.strip(".'\"()") for t in re.split(r"[\s,^]+", fold(span)) if t.strip(".'\"()")]


def tok_ok(t, words, allow_initial=True):
    if t in words:
        return True
    if allow_initial and len(t) == 1 and any(w.startswith(t) for w in words):
        return True
    if "-" in t:
        return all(tok_ok(p, words, allow_initial) for p in t.split("-") if p)
    return False


def name_held(span, files):
    words = name_words(files)
    toks = name_tokens(span)
    return bool(toks) and any(len(t) > 1 for t in toks) and all(tok_ok(t, words) for t in toks)


def name_partly_held(span, files):
    words = name_words(files)
    return any(len(t) > 1 and tok_ok(t, words, allow_initial=False) for t in name_tokens(span))


# ---------- dates ----------
def y2(y):
    y = int(y)
    if y < 100:
        y += 2000 if y <= 30 else 1900
    return y


def date_candidates(span):
    s = fold(span)
    cands = []
    month = None
    for w in re.findall(r"[a-z]+", s):
        if w in MONTHS:
            month = MONTHS[w]
    nums = re.findall(r"\d+", s)
    if month:
        year = next((int(n) for n in nums if len(n) == 4), None)
        day = next((int(n) for n in nums if len(n) <= 2 and 1 <= int(n) <= 31), None)
        cands.append((year, month, day))
        return cands
    if re.fullmatch(r"\d{8}", s.strip()):
        return [(int(s[:4]), int(s[4:6]), int(s[6:8]))]
    if re.fullmatch(r"\d{4}", s.strip()):
        return [(int(s), None, None)]
    parts = re.split(r"[./\-\s]+", s.strip())
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        a, b, c = parts
        if len(a) == 4:
            return [(int(a), int(b), int(c))]
        return [(y2(c), int(b), int(a)), (y2(c), int(a), int(b))]
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        a, b = parts
        if len(b) == 4:
            return [(int(b), int(a), None)]
        return [(None, int(b), int(a)), (None, int(a), int(b))]
    return []


def header_dates(files):
    out = []
    for k, v in values(files, lambda k: k.endswith("Date")):
        if re.fullmatch(r"\d{8}", v):
            out.append((int(v[:4]), int(v[4:6]), int(v[6:8])))
    return out


def date_match(span, files):
    cands = date_candidates(span)
    if not cands:
        return None
    hd = header_dates(files)
    for c in cands:
        for h in hd:
            if all(x is None or x == y for x, y in zip(c, h)):
                return True
    return False


# ---------- times ----------
def time_of(span):
    s = fold(span)
    nums = re.findall(r"\d+", s)
    if len(nums) == 1 and ("uhr" in s or "h" in s or "o'clock" in s):
        nums.append("0")
    if len(nums) < 2:
        return None
    h, m = int(nums[0]), int(nums[1])
    if "pm" in s.replace(".", "") and h < 12:
        h += 12
    if "am" in s.replace(".", "") and h == 12:
        h = 0
    return (h, m)


def time_match(span, files):
    t = time_of(span)
    if t is None:
        return None
    for _, v in values(files, lambda k: k.endswith("Time")):
        if re.match(r"\d{4}", v) and (int(v[:2]), int(v[2:4])) == t:
            return True
    return False


# ---------- phones ----------
def phone_norm(s):
    s = s.replace("(0)", "")
    intl = s.strip().startswith("+")
    d = re.sub(r"\D", "", s)
    if d.startswith("00"):
        d, intl = d[2:], True
    if intl:
        if d.startswith("1"):
            return d[1:]
        for cc in ("44", "49", "33"):
            if d.startswith(cc):
                return "0" + d[len(cc):]
        return d
    if len(d) == 11 and d.startswith("1"):
        return d[1:]
    return d


def phone_match(span, files):
    n = phone_norm(span)
    return any(phone_norm(v) == n for _, v in values(files, lambda k: "Telephone" in k or "Fax" in k))


# ---------- ids, emails, urls ----------
def alnum(s):
    return re.sub(r"[^0-9a-z]", "", fold(s))


def id_match(span, files):
    a = alnum(span)
    return any(alnum(v) == a for _, v in values(files))


def exact_match(span, files):
    return any(fold(span).strip() in fold(v) for _, v in values(files))


# ---------- institutions, addresses ----------
def wordset(s):
    return {w for w in re.findall(r"[a-z0-9]+", fold(s).replace("'s", "s").replace("’s", "s"))
            if w not in STOP}


INST_KEYS = {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "PatientAddress",
             "IssuerOfPatientID", "StationName"}
ADDR_KEYS = {"InstitutionAddress", "PatientAddress"}


def words_match(span, files, keys):
    ws = wordset(span)
    if not ws:
        return None
    return any(ws <= wordset(v) for _, v in values(files, lambda k: k in keys))


# ---------- age ----------
def age_match(span, files):
    d = re.findall(r"\d+", span)
    if not d:
        return None
    for _, v in values(files, lambda k: k == "PatientAge"):
        m = re.fullmatch(r"(\d{3})Y", v)
        if m and int(m.group(1)) == int(d[0]):
            return True
    return False


def held(cat, span, files):
    cat = cat.lower()
    if cat == "name":
        return name_held(span, files)
    if cat == "date":
        return date_match(span, files)
    if cat == "time":
        return time_match(span, files)
    if cat == "phone":
        return phone_match(span, files)
    if cat == "id":
        return id_match(span, files)
    if cat in ("email", "url"):
        return exact_match(span, files)
    if cat == "institution":
        return words_match(span, files, INST_KEYS)
    if cat == "address":
        return words_match(span, files, ADDR_KEYS)
    if cat == "age":
        return age_match(span, files)
    return None


def check_part(part, minimum):
    errs, hints = [], []
    path = os.path.join(HERE, part + ".txt")
    raw = open(path, encoding="utf-8").read()
    if "\r" in raw:
        errs.append("CR characters found")
    lines = raw.split("\n")
    if not lines[0].startswith("#"):
        errs.append("file does not start with a comment line")
    for i, l in enumerate(lines[:-1], 1):
        if l.strip() == "":
            errs.append(f"{i}: blank line")
    cases, perr = parse_file(path)
    errs += perr
    names = [c["name"] for c in cases]
    if len(set(names)) != len(names):
        errs.append("duplicate case names")
    for c in cases:
        files = c["files"]
        if "PatientName" not in files[0]:
            errs.append(f"{c['name']}: first file lacks PatientName")
        if not c["texts"]:
            errs.append(f"{c['name']}: no texts")
        for t in c["texts"]:
            ln = t["line"]
            raw_t = t["raw"]
            # label syntax: every [[ must open a well-formed label, no nesting
            stripped_markup = re.sub(r"\[\[([A-Za-z]+):((?:(?!\[\[|\]\]).)+?)\]\]", "", raw_t)
            if "[[" in stripped_markup or "]]" in stripped_markup:
                errs.append(f"{part}:{ln}: malformed or nested label: {raw_t}")
            for cat, span, s, e in t["labels"]:
                if cat.lower() not in CATEGORIES or not (cat.isupper() or cat.islower()):
                    errs.append(f"{part}:{ln}: bad category {cat!r}")
                    continue
                if "[[" in span or not span or span != span.strip():
                    errs.append(f"{part}:{ln}: bad span {span!r}")
                h = held(cat, span, files)
                if h is None:
                    errs.append(f"{part}:{ln}: cannot interpret {cat}:{span!r}")
                elif cat.isupper() and not h:
                    errs.append(f"{part}:{ln}: UPPER {cat}:{span!r} not held by any file of {c['name']}")
                elif cat.islower() and h:
                    errs.append(f"{part}:{ln}: lower {cat}:{span!r} IS held by a file of {c['name']}")
                elif cat == "name" and name_partly_held(span, files):
                    errs.append(f"{part}:{ln}: lower name {span!r} is partly held by a file")
            if t["kind"] in ("series", "study", "protocol") and len(t["text"]) > 64:
                hints.append(f"{part}:{ln}: {t['kind']} longer than 64 chars (LO)")
        # review hints: header name parts occurring unlabelled in texts
        words = {w for w in name_words(files) if len(w) >= 3}
        for t in c["texts"]:
            covered = [(s, e) for _, _, s, e in t["labels"]]
            for m in re.finditer(r"[\w'-]+", t["text"]):
                if any(s <= m.start() < e for s, e in covered):
                    continue
                w = fold(m.group(0))
                if w in words or any(p in words for p in w.split("-") if len(p) >= 3):
                    hints.append(f"{part}:{t['line']}: unlabelled header-name word {m.group(0)!r} "
                                 f"in {t['kind']}: {t['text'][:90]}")
    # must-keep
    mkpath = os.path.join(HERE, "must-keep-" + part + ".txt")
    if not open(mkpath, encoding="utf-8").read().startswith("#"):
        errs.append("must-keep file does not start with a comment line")
    mk = read_mustkeep(mkpath)
    if len(set(mk)) != len(mk):
        errs.append("duplicate must-keep phrases")
    all_texts = [t for c in cases for t in c["texts"]]
    for p in mk:
        if p != p.strip() or "\t" in p:
            errs.append(f"must-keep {p!r}: surrounding whitespace or tab")
        found = 0
        for t in all_texts:
            start = 0
            while True:
                i = t["text"].find(p, start)
                if i < 0:
                    break
                found += 1
                for cat, span, s, e in t["labels"]:
                    if i < e and s < i + len(p):
                        errs.append(f"must-keep {p!r} overlaps label {cat}:{span!r} at {part}:{t['line']}")
                start = i + 1
        if not found:
            errs.append(f"must-keep {p!r} not found in {part}")
    s = summarize(part)
    got = {"lines": s["lines"], "lower": sum(s["lower"].values()), "mustkeep": s["mustkeep"]}
    for k, v in minimum.items():
        if got[k] < v:
            errs.append(f"minimum not met: {k} = {got[k]} < {v}")
    return errs, hints, s


def main():
    total_err = 0
    tot = {"lines": 0, "lower": 0, "mustkeep": 0, "cases": 0, "mk_epo": 0}
    for part in ("tune", "heldout"):
        errs, hints, s = check_part(part, {"lines": 200, "lower": 75, "mustkeep": 150})
        print(f"== {part}: {len(errs)} error(s), {len(hints)} hint(s)")
        for e in errs:
            print("ERROR", e)
        for h in hints:
            print("hint ", h)
        total_err += len(errs)
        tot["lines"] += s["lines"]
        tot["lower"] += sum(s["lower"].values())
        tot["mustkeep"] += s["mustkeep"]
        tot["cases"] += s["cases"]
        tot["mk_epo"] += s["mk_eponym_or_collision"]
    for k, v in {"lines": 420, "lower": 160, "mustkeep": 310, "cases": 40, "mk_epo": 80}.items():
        if tot[k] < v:
            print(f"ERROR overall minimum not met: {k} = {tot[k]} < {v}")
            total_err += 1
    print("overall:", tot)
    print("RESULT:", "OK" if total_err == 0 else f"{total_err} error(s)")
    return 1 if total_err else 0


if __name__ == "__main__":
    sys.exit(main())
