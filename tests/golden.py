"""The output of a run, recorded: proof that a refactoring changes no byte.

:func:`manifest` de-identifies the bundled sample and every real file that pip installs
(:mod:`tests.realdata`) under a few profiles and option sets, with a fixed key and date, and
returns, per configuration, the sha256 of every written file (by its path in the output
tree) and the outcome and reason of every input. ``tests/data/golden-output.json`` holds the
manifest recorded before the package was reorganised (issue 12);
``tests/test_golden_output.py`` compares a fresh run against it.

Record again (only when a change of output is intended, and say so in the commit)::

    python -m tests.golden
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from dicomveil import Key, Profile, RunConfig, run

from .realdata import ROOT, place, real_files

RECORD = ROOT / "tests" / "data" / "golden-output.json"
KEY = Key(b"golden-key-0123456789abcdef-0123")
TODAY = dt.date(2026, 12, 5)
SAMPLE = ROOT / "examples" / "sample"

# (name, profile, options, inputs): "real" is every real file, "sample" the bundled sample.
CONFIGS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("basic", "ps3.15-basic", (), "real"),
    (
        "clean-retain",
        "ps3.15-basic",
        (
            "clean-descriptors",
            "clean-structured-content",
            "clean-graphics",
            "retain-safe-private",
            "retain-uids",
            "retain-device-identity",
            "retain-patient-characteristics",
            "retain-long-modified-dates",
        ),
        "real",
    ),
    ("nidb-anonymize-full", "nidb-anonymize-full", (), "real"),
    ("lab-dicombrowser", "lab-dicombrowser", (), "real"),
    ("qmenta", "qmenta", (), "real"),
    ("sample-pixels", "ps3.15-basic", ("clean-pixel-data", "clean-descriptors"), "sample"),
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inputs(kind: str, folder: Path) -> Path:
    if kind == "sample":
        return SAMPLE
    for real in real_files():
        place(real.path, folder / Path(real.name).parent)
    return folder


def run_config(name: str, profile: str, options: tuple[str, ...], kind: str) -> dict[str, object]:
    """One configuration's record: written files by sha256, outcomes by input."""
    with tempfile.TemporaryDirectory(prefix="dicomveil-golden-") as tmp:
        base = Path(tmp)
        inputs = _inputs(kind, base / "in")
        output = base / "out"
        config = RunConfig(
            profile=Profile.named(profile).with_options(options),
            key=KEY,
            output=output,
            map_dir=base / "maps",
            workers=1,
            today=TODAY,
        )
        summary = run([inputs], config)
        roots = (str(inputs) + "/", str(base) + "/")

        def plain(text: str) -> str:
            for root in roots:
                text = text.replace(root, "")
            return text

        outcomes = sorted(
            f"{plain(r.task.display)} {r.outcome.value} {plain(r.reason)}" for r in summary.results
        )
        files = {
            p.relative_to(output).as_posix(): _sha256(p)
            for p in sorted(output.rglob("*"))
            if p.is_file()
        }
    return {"outcomes": outcomes, "files": files}


def manifest() -> dict[str, dict[str, object]]:
    """Every configuration's record."""
    return {
        name: run_config(name, profile, options, kind) for name, profile, options, kind in CONFIGS
    }


if __name__ == "__main__":
    RECORD.write_text(json.dumps(manifest(), indent=1, sort_keys=True) + "\n")
    sys.stdout.write(f"recorded {RECORD.relative_to(ROOT)}\n")
