"""What a real file's outcome must be, from facts about the file, never from dicomveil.

:func:`facts` reads a file with pydicom (an independent reader) and records what decides
whether a de-identifier can write it: whether it is DICOM at all, a DICOMDIR, truly
malformed (pydicom cannot read it, an element cannot be decoded, no SOP Instance UID,
pixel data shorter than its frames), and what in it carries a risk that PS3.15 says only
an option can clean (BurnedInAnnotation, RecognizableVisualFeatures, an SR content tree,
an encapsulated document, an image of a kind that often carries burned-in text).

:func:`judge` compares an outcome with these facts under a profile's options: a withheld
file must have a fact that justifies the withholding and a reason that names it; a failed
file must be malformed; a written file must not have a risk the profile does not clean.
The policy written here is the README's ("What is never kept"), restated independently of
the engine's code.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.errors import InvalidDicomError

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
ENCAPSULATED_DOCUMENT_PREFIX = "1.2.840.10008.5.1.4.1.1.104."
# Images that often carry burned-in text (README "What is never kept"): ultrasound, secondary
# capture, photographs and visible light, other.
RISKY_MODALITIES = frozenset({"US", "IVUS", "OT", "SC", "XC", "ES", "GM", "DOC", "SM"})
RISKY_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture family
    "1.2.840.10008.5.1.4.1.1.77.1",  # visible light family
    "1.2.840.10008.5.1.4.1.1.6.",  # ultrasound
    "1.2.840.10008.5.1.4.1.1.3.1",  # ultrasound multi-frame
)
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
DCIODVFY = shutil.which("dciodvfy")
DCMDUMP = shutil.which("dcmdump")


@dataclass(frozen=True)
class Facts:
    dicom: bool  # pydicom reads it (force=True) and finds a dataset
    dicomdir: bool
    malformed: str  # why pydicom finds the file truly malformed, "" when it is not
    dcmtk_unreadable: bool = False  # dcmtk's dcmdump cannot read it either (a second reader)
    prefix: bool = True  # the DICM prefix after a 128-byte preamble
    sop_class: str = ""
    modality: str = ""
    burned_in: str = ""  # BurnedInAnnotation as written (upper case), "" when absent
    visual_features: str = ""
    pixels: bool = False
    pixel_count: int = 0  # rows x columns x frames
    sr_tree: bool = False  # a non-empty ContentSequence at the top level
    encapsulated_document: bool = False

    @property
    def risky_kind(self) -> bool:
        return self.modality in RISKY_MODALITIES or self.sop_class.startswith(RISKY_SOP_PREFIXES)


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:
        return ""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    return str(value).strip("\x00 ")


def _decode_all(ds: Dataset) -> None:
    """Decode every element's value, at every depth (raises on what cannot be decoded)."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _decode_all(item)
        else:
            _ = elem.value


def _pixel_problem(ds: Dataset) -> str:
    """Pixel data shorter than its frames, or encapsulated pixel data that does not parse."""
    if "PixelData" not in ds:
        return ""
    data = ds.PixelData
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:
        return ""
    if syntax is not None and syntax.is_encapsulated:
        try:
            fragments = list(generate_fragments(data))
        except Exception:
            return "encapsulated pixel data does not parse"
        if not fragments:
            return "encapsulated pixel data holds no fragment"
        return ""
    if str(ds.get("PhotometricInterpretation", "")).endswith("_422"):
        samples = 2  # two chroma samples shared by two pixels: 2 bytes a pixel at 8 bits
    expected = rows * columns * samples * frames * bits // 8
    if len(data) < expected:
        return "pixel data is shorter than its frames"
    return ""


@cache
def facts(path: Path) -> Facts:
    """The facts of one file (cached per process)."""
    found = _pydicom_facts(path)
    with path.open("rb") as fh:
        prefix = fh.read(132)[128:] == b"DICM"
    unreadable = False
    if DCMDUMP is not None:
        completed = subprocess.run([DCMDUMP, "-q", str(path)], capture_output=True, check=False)
        unreadable = completed.returncode != 0
    return replace(found, dcmtk_unreadable=unreadable, prefix=prefix)


def _pydicom_facts(path: Path) -> Facts:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as exc:
        return Facts(dicom=False, dicomdir=False, malformed=f"unreadable ({type(exc).__name__})")
    except Exception as exc:
        return Facts(dicom=False, dicomdir=False, malformed=f"unreadable ({type(exc).__name__})")
    if len(ds) == 0:
        return Facts(dicom=False, dicomdir=False, malformed="no dataset")
    meta_class = _text(ds.file_meta, "MediaStorageSOPClassUID") if ds.file_meta else ""
    if meta_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        return Facts(dicom=True, dicomdir=True, malformed="")
    malformed = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _decode_all(ds)
        except Exception as exc:
            malformed = f"an element cannot be decoded ({type(exc).__name__})"
        if not malformed and not _text(ds, "SOPInstanceUID"):
            malformed = "no SOP Instance UID"
        if not malformed:
            malformed = _pixel_problem(ds)
        pixels = any(t in ds for t in PIXEL_TAGS)
        try:
            count = int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
            count *= int(ds.get("NumberOfFrames", 1) or 1)
        except Exception:
            count = 0
        content = ds.get("ContentSequence")
        sop_class = _text(ds, "SOPClassUID")
        return Facts(
            dicom=True,
            dicomdir=False,
            malformed=malformed,
            sop_class=sop_class,
            modality=_text(ds, "Modality").upper(),
            burned_in=_text(ds, "BurnedInAnnotation").upper(),
            visual_features=_text(ds, "RecognizableVisualFeatures").upper(),
            pixels=pixels,
            pixel_count=count,
            sr_tree=bool(content),
            encapsulated_document=sop_class.startswith(ENCAPSULATED_DOCUMENT_PREFIX)
            or "EncapsulatedDocument" in ds,
        )


@dataclass(frozen=True)
class Config:
    """A profile of the matrix, as the oracle sees it (names only, no dicomveil objects)."""

    name: str
    profile: str  # a preset name
    options: tuple[str, ...] = ()

    @property
    def copy(self) -> bool:
        return self.profile == "original"

    def has(self, option: str) -> bool:
        return option in self.options


def judge(f: Facts, config: Config, outcome: str, reason: str) -> str:
    """'' when the outcome fits the facts under the config, else what is wrong."""
    if not f.dicom:
        return "" if outcome in ("skipped", "failed") else f"not DICOM ({f.malformed}): {outcome}"
    if f.dicomdir:
        return "" if outcome == "skipped" else f"a DICOMDIR: {outcome}"
    broken = f.malformed or ("dcmtk cannot read it" if f.dcmtk_unreadable else "")
    if outcome == "failed":
        return "" if broken else f"failed, but the input is well formed: {reason}"
    if outcome == "skipped" and broken and not f.prefix:
        return ""  # no DICM prefix and unreadable: nothing says it is DICOM
    if f.malformed and outcome == "written":
        return f"written, but the input is malformed ({f.malformed})"
    if config.copy:
        return "" if outcome == "written" else f"a copy profile {outcome} it: {reason}"
    if outcome == "skipped":
        return f"skipped a DICOM file: {reason}"
    clean_pixels = config.has("clean-pixel-data")
    justified = _withhold_reasons(f, config)
    if outcome == "withheld":
        if clean_pixels and reason.startswith("clean-pixel-data:") and f.pixels:
            return ""  # the option's definition: what it cannot redact is withheld
        for needle in justified:
            if needle in reason:
                return ""
        return f"withheld for a reason no fact of the file supports: {reason}"
    if justified:
        return f"written, but {justified[0]!r} should withhold it"
    return ""


def _withhold_reasons(f: Facts, config: Config) -> list[str]:
    """The reasons (as the words a true reason must hold) that justify withholding."""
    found = []
    clean_pixels = config.has("clean-pixel-data")
    if f.encapsulated_document:
        found.append("encapsulated document")
    if f.burned_in == "YES" and not clean_pixels:
        found.append("BurnedInAnnotation (0028,0301) is YES")
    if f.visual_features == "YES":
        found.append("RecognizableVisualFeatures (0028,0302) is YES")
    if f.sr_tree and not config.has("clean-structured-content"):
        found.append("ContentSequence (0040,A730)")
    if f.risky_kind and f.pixels and f.burned_in not in ("YES", "NO") and not clean_pixels:
        found.append("burned-in text not ruled out")
    return found


# --------------------------------------------------------------------------------------------
# dciodvfy, the IOD oracle


def new_iod_errors(before: Path, after: Path) -> list[str]:
    """dciodvfy's errors on ``after`` that ``before`` does not have (values normalised)."""
    from .test_dciodvfy import dciodvfy_errors

    old = dciodvfy_errors(before)
    return [line for key, line in dciodvfy_errors(after).items() if key not in old]
