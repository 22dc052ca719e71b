"""Other de-identifiers timed beside dicomveil by ``bench_run.py`` (issue 18).

* **gdcmanon** (GDCM, C++; Debian package ``libgdcm-tools``): the PS3.15 Basic Application
  Level Confidentiality Profile (``-e``). It encrypts the replaced attributes into an Encrypted
  Attributes Sequence, so it needs an X.509 certificate: a self-signed one is made once with
  ``openssl`` in the scratch folder. It runs single-threaded over the input folder
  (``-r -i IN -o OUT``).
* **dicognito** (Python, PyPI ``dicognito``): ``python -m dicognito -o OUT IN``, run with this
  interpreter when the package imports.

Each peer is skipped, with the reason printed as a note, where it is absent. Nothing here is
dicomveil code: these are the yardsticks.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Peer:
    """A peer command: ``argv(input_folder, output_folder)`` or why it cannot run here."""

    name: str
    description: str
    prefix: tuple[str, ...] = ()
    missing: str | None = None

    def argv(self, source: Path, out: Path) -> list[str]:
        """The command line that de-identifies the folder ``source`` into ``out``."""
        if self.name == "gdcmanon":
            return [*self.prefix, "-r", "--continue", "-i", str(source), "-o", str(out)]
        return [*self.prefix, "-o", str(out), str(source)]

    def argv_file(self, source: Path, out: Path) -> list[str]:
        """The command line for one file ``source`` into the folder ``out`` (made first)."""
        out.mkdir(parents=True, exist_ok=True)
        if self.name == "gdcmanon":
            return [*self.prefix, "-i", str(source), "-o", str(out / source.name)]
        return [*self.prefix, "-o", str(out), str(source)]


def _certificate(scratch: Path) -> tuple[Path, Path] | str:
    """A self-signed RSA certificate and key for gdcmanon -e, or why none could be made."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return "openssl not found (gdcmanon -e needs a certificate)"
    key, cert = scratch / "gdcmanon-key.pem", scratch / "gdcmanon-cert.pem"
    if not cert.exists():
        done = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=dicomveil-bench", "-keyout", str(key), "-out", str(cert)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return f"openssl could not make a certificate: {done.stderr.strip()[:200]}"
    return key, cert


def gdcmanon(scratch: Path) -> Peer:
    """GDCM's gdcmanon in PS3.15 Basic mode (-e, AES-256 with a self-signed certificate)."""
    found = shutil.which("gdcmanon")
    description = "gdcmanon -e (GDCM, C++, PS3.15 Basic Profile), single-threaded, subprocess"
    if found is None:
        return Peer(
            "gdcmanon", description, missing="gdcmanon not found: apt-get install libgdcm-tools"
        )
    made = _certificate(scratch)
    if isinstance(made, str):
        return Peer("gdcmanon", description, missing=made)
    _key, cert = made
    version = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    words = version.stdout.split()
    label = f"gdcmanon {words[2]}" if len(words) > 2 and words[1] == "gdcm" else "gdcmanon"
    return Peer("gdcmanon", f"{label} -e: " + description.split(": ", 1)[-1],
                prefix=(found, "-e", "-c", str(cert)))  # fmt: skip


def dicognito() -> Peer:
    """dicognito, run by this interpreter (``python -m dicognito``)."""
    description = "dicognito (Python) -o OUT IN, one process, subprocess"
    if importlib.util.find_spec("dicognito") is None:
        return Peer(
            "dicognito", description, missing="dicognito not installed: pip install dicognito"
        )
    return Peer("dicognito", description, prefix=(sys.executable, "-m", "dicognito"))
