"""Write the synthetic sample folder used by the README, tests and benchmarks.

Usage: ``python tools/make_sample.py [OUT] [--check]`` (OUT defaults to
``<repo>/examples/sample``).

Layout (no PHI in any file or folder name)::

    ct1/IM0001..IM0003   patient A, CT, 3 slices     } same study
    mr1/IM0001..IM0003   patient A, MR, 3 slices     }
    ct2/IM0001..IM0002   patient B, CT, 2 slices
    us/IM0001            patient B, ultrasound with Burned In Annotation YES
    notes.txt            not DICOM; a de-identifier must not copy it

The output is deterministic: after writing, the folder is built a second time in a
temporary folder and both are compared byte for byte.  ``--check`` only compares an
existing OUT with a fresh build (exit status 1 when they differ).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "examples" / "sample"

sys.path[:0] = [str(REPO), str(REPO / "src")]  # tests.support, and dicomveil uninstalled
from tests.support import synthetic  # noqa: E402

PATIENT_A_SEED = 1
PATIENT_B_SEED = 2
SUBFOLDERS = ("ct1", "mr1", "ct2", "us")
NOTES_NAME = "notes.txt"
NOTES_TEXT = "scan notes; this file is not DICOM and must not be copied\n"


def make_sample(out: Path) -> list[Path]:
    """(Re)write the sample into ``out``; returns every file written."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in SUBFOLDERS:  # only the folders this script owns
        shutil.rmtree(out / sub, ignore_errors=True)
    patient_a = synthetic.fake_patient(PATIENT_A_SEED)
    patient_b = synthetic.fake_patient(PATIENT_B_SEED)
    written: list[Path] = []
    written += synthetic.write_series(synthetic.ct_series(patient_a, seed=10), out / "ct1")
    written += synthetic.write_series(synthetic.mr_series(patient_a, seed=10), out / "mr1")
    written += synthetic.write_series(
        synthetic.ct_series(patient_b, seed=20, n_slices=2), out / "ct2"
    )
    written += synthetic.write_series([synthetic.us_burned_in(patient_b, seed=21)], out / "us")
    notes = out / NOTES_NAME
    notes.write_text(NOTES_TEXT, encoding="ascii")
    written.append(notes)
    return written


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every sample file under folder, keyed by relative path."""
    found: dict[str, str] = {}
    for sub in SUBFOLDERS:
        for path in sorted((folder / sub).glob("*")):
            found[path.relative_to(folder).as_posix()] = hashlib.sha256(
                path.read_bytes()
            ).hexdigest()
    notes = folder / NOTES_NAME
    if notes.exists():
        found[NOTES_NAME] = hashlib.sha256(notes.read_bytes()).hexdigest()
    return found


def matches_fresh_build(folder: Path) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        make_sample(Path(tmp))
        return digests(Path(tmp)) == digests(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--check", action="store_true", help="only verify that OUT equals a fresh build"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.check:
        if matches_fresh_build(out):
            print(f"{out}: up to date")
            return 0
        print(f"{out}: differs from a fresh build; rerun tools/make_sample.py", file=sys.stderr)
        return 1
    files = make_sample(out)
    size = sum(path.stat().st_size for path in files)
    if not matches_fresh_build(out):
        print("error: a second build gave different bytes", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} files, {size} bytes, to {out} (deterministic: OK)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
