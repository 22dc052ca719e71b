"""The clean-pixel-data step: burned-in text found and blacked out in the pixels of one input.

Ultrasound, secondary captures, screenshots and some X-ray and endoscopy images carry names,
IDs and dates written into the pixels. With the ``clean-pixel-data`` option (CID 7050 code
113101) such an image is kept only after this step has looked at every frame and blacked out
what it found:

1. **Header signals** (:mod:`~dicomveil.cleaners.pixels.signals`) decide whether an image is
   looked at. Images without any signal are left to the engine as before.
2. **Rectangle rules** (:mod:`~dicomveil.cleaners.pixels.rules`, per manufacturer, model and
   image size) give regions that are always blacked out on matching images.
3. **OCR** (:mod:`~dicomveil.cleaners.pixels.ocr`, Tesseract) of every frame finds the rest
   (:mod:`~dicomveil.cleaners.pixels.detect`); each line of words becomes a padded box.
4. **Redaction** (:mod:`~dicomveil.cleaners.pixels.redact`) fills every box of every frame
   with black (or a configured value) in the stored pixel values, and re-encodes compressed
   pixel data in its own transfer syntax.

Policy: Burned In Annotation becomes NO only when this has succeeded. Text found but not
redactable (no encoder for the transfer syntax, an unsupported pixel layout), pixel data
that cannot be decoded, OCR that is not installed, or an image whose header says YES but
where nothing was found, withhold the file with a stated reason (unless the profile allows
the risk). An image with no text keeps its pixel data byte-identical.

Reports (:class:`PixelOutcome`) hold boxes per frame, never the recognised text outside the
object itself (``Detection.text`` is shown with ``--show-values`` only: it is PHI).

The step is called by the engine's users with the engine (:class:`PixelEngine` says what it
reads of it), so that this package does not import the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydicom.dataset import Dataset

import dicomveil.cleaners.pixels.ocr as ocr
from dicomveil.cleaners.pixels.boxes import Box
from dicomveil.cleaners.pixels.detect import Detector, FrameReport, write_preview
from dicomveil.cleaners.pixels.header import BURNED_IN, header_text
from dicomveil.cleaners.pixels.image import PixelImage, WithholdError, decode_frames, read_full
from dicomveil.cleaners.pixels.redact import redact
from dicomveil.cleaners.pixels.rules import PixelRules, load_rules
from dicomveil.cleaners.pixels.signals import header_signals
from dicomveil.io import PixelSource, SourceFile
from dicomveil.standard.options import Option
from dicomveil.standard.risks import Risk

# --------------------------------------------------------------------------------------------
# What the step reads of its caller (the engine)


class ProfileChoices(Protocol):
    """What the pixel step reads of a profile: its options and the risks it allows."""

    @property
    def options(self) -> Container[Option]:
        """The profile's options (is ``clean-pixel-data`` among them)."""
        ...

    @property
    def allow(self) -> Container[Risk]:
        """The risks the profile lets through instead of withholding the file."""
        ...


class CompiledChoices(Protocol):
    """What the pixel step reads of a compiled profile."""

    @property
    def profile(self) -> ProfileChoices:
        """The profile as written: its options and allowed risks."""
        ...

    @property
    def copy(self) -> bool:
        """The profile makes byte-identical copies: no pixel step."""
        ...

    @property
    def replace_uids(self) -> bool:
        """The engine replaces UIDs: previews are named by the new SOP Instance UID."""
        ...


class UidPseudonymizer(Protocol):
    """What the pixel step asks of the pseudonymizer: the UID that replaces a UID."""

    def uid(self, original: str, /) -> str:
        """Return the UID the engine writes in place of ``original``.

        Parameters
        ----------
        original : str
            A UID of the input.

        Returns
        -------
        str
            Its replacement.
        """
        ...


class PixelEngine(Protocol):
    """What :func:`clean_pixels` reads of its caller (:class:`dicomveil.engine.Engine`)."""

    @property
    def profile(self) -> CompiledChoices:
        """The compiled profile the engine applies."""
        ...

    @property
    def pseudonymizer(self) -> UidPseudonymizer:
        """The engine's pseudonymizer (to name previews like the output)."""
        ...


# --------------------------------------------------------------------------------------------
# Settings and reports


@dataclass(frozen=True)
class PixelSettings:
    """How the clean-pixel-data option works in a run (travels to worker processes).

    Attributes
    ----------
    fill : int or None
        The stored value painted over text; None: black for the photometric interpretation.
    padding : int
        Pixels added around each OCR box (at least).
    ocr : ocr.OcrSettings
        How hard OCR looks.
    rules_file : Path or None
        More rectangle rules, added to the bundled ones.
    preview_dir : Path or None
        Where PNG previews of redacted frames are written (outside the output).
    jpeg_quality : int
        The quality of lossy JPEG re-encoding (1 to 100).

    Raises
    ------
    ValueError
        A negative padding, a fill value below any stored value, a JPEG quality out of range.
    """

    fill: int | None = None  # None: black for the photometric interpretation
    padding: int = 3  # pixels added around each OCR box
    ocr: ocr.OcrSettings = field(default_factory=ocr.OcrSettings)
    rules_file: Path | None = None  # more rules, added to the bundled ones
    preview_dir: Path | None = None  # PNG previews of redacted frames (outside the output)
    jpeg_quality: int = 95  # re-encoding lossy JPEG

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError("padding is 0 or more pixels")
        if self.fill is not None and self.fill < -(1 << 31):
            raise ValueError("fill is a stored pixel value")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality is 1 to 100")

    def rules(self) -> PixelRules:
        """Load the rectangle rules in use (once per process and file).

        Returns
        -------
        PixelRules
            The bundled rules, then those of ``rules_file``.

        Raises
        ------
        ProfileError
            The rules file cannot be used.
        """
        return load_rules(self.rules_file)


@dataclass
class PixelOutcome:
    """What the pixel step did to one file.

    Attributes
    ----------
    checked : bool
        The pixels were looked at.
    signals : tuple[str, ...]
        The header signals that made the step look.
    frames : tuple[FrameReport, ...]
        What was found and blacked out, per frame.
    withheld : str or None
        Why the file must not be written; None when it may.
    replacement : PixelSource or None
        The redacted pixel data, when it changed.
    verdict : str
        The outcome in a few words, for reports.
    """

    checked: bool = False  # the pixels were looked at
    signals: tuple[str, ...] = ()
    frames: tuple[FrameReport, ...] = ()
    withheld: str | None = None  # why the file must not be written
    replacement: PixelSource | None = None  # the redacted pixel data, when changed
    verdict: str = "not checked"

    @property
    def boxes_found(self) -> int:
        """The boxes of text found, in every frame."""
        return sum(len(f.found) for f in self.frames)

    @property
    def boxes_redacted(self) -> int:
        """The boxes blacked out, in every frame."""
        return sum(len(f.redacted) for f in self.frames)


# --------------------------------------------------------------------------------------------
# The pixel step


def clean_pixels(
    source: SourceFile, engine: PixelEngine, settings: PixelSettings | None = None
) -> PixelOutcome:
    """Run the clean-pixel-data step for one input, before the engine.

    Does nothing unless the profile has the option and the header signals possible text. On
    success it sets Burned In Annotation NO (and the lossy compression attributes when it
    re-encoded lossily) on ``source.dataset``.

    Parameters
    ----------
    source : SourceFile
        The input, read up to its pixel data.
    engine : PixelEngine
        The engine that de-identifies it next: its profile and pseudonymizer are read.
    settings : PixelSettings or None
        How the step works (default: :class:`PixelSettings`'s defaults).

    Returns
    -------
    PixelOutcome
        What was done: the redacted pixel data (if any box was found) for
        :func:`dicomveil.io.write_output`, or why the file is withheld.

    Raises
    ------
    ProfileError
        The settings' rules file cannot be used.
    """
    settings = settings or PixelSettings()
    profile = engine.profile
    if profile.copy or Option.CLEAN_PIXEL_DATA not in profile.profile.options:
        return PixelOutcome()
    if not source.has_pixel_data:
        return PixelOutcome(verdict="no pixel data")
    rules = settings.rules()
    signals = header_signals(source.dataset, rules)
    if not signals:
        return PixelOutcome(verdict="no sign of burned-in text in the header: not checked")
    risk = (
        Risk.BURNED_IN_ANNOTATION
        if header_text(source.dataset, BURNED_IN).upper() == "YES"
        else Risk.POSSIBLE_BURNED_IN
    )
    outcome = PixelOutcome(checked=True, signals=signals)
    try:
        _clean(source, settings, rules, outcome, _preview_namer(source.dataset, engine, settings))
    except WithholdError as exc:
        outcome.replacement = None
        if risk in profile.profile.allow:
            outcome.verdict = f"not cleaned, allowed by the profile ({exc})"
            return outcome
        outcome.withheld = f"clean-pixel-data: {exc}"
        outcome.verdict = f"withheld: {exc}"
    return outcome


def _preview_namer(
    ds: Dataset, engine: PixelEngine, settings: PixelSettings
) -> Callable[[int], Path] | None:
    folder = settings.preview_dir
    if folder is None:
        return None
    original = header_text(ds, 0x00080018)
    # Named like the output: the SOP Instance UID the engine will write.
    name = engine.pseudonymizer.uid(original) if engine.profile.replace_uids else original
    name = "".join(ch for ch in name if ch.isdigit() or ch == ".") or "unnamed"
    return lambda frame: folder / f"{name}-frame{frame + 1:04d}.png"


def _clean(
    source: SourceFile,
    settings: PixelSettings,
    rules: PixelRules,
    outcome: PixelOutcome,
    preview: Callable[[int], Path] | None,
) -> None:
    missing = ocr.unavailable()
    if missing is not None:
        raise WithholdError(missing)
    header = source.dataset
    ts = source.transfer_syntax
    full = read_full(source)
    image = PixelImage.of(full, ts)
    detector = Detector(settings.ocr, settings.padding, rules.matching(header), image.size)
    frames: list[FrameReport] = []
    redactions: dict[int, tuple[Box, ...]] = {}
    for index, frame in enumerate(decode_frames(full, ts, image)):
        gray = ocr.to_gray8(image.display(frame, full), invert=image.monochrome1)
        report = detector.frame(index, gray)
        frames.append(report)
        if report.redacted:
            redactions[index] = report.redacted
        if preview is not None and report.redacted:
            write_preview(gray, report.found, report.redacted, preview(index))
    outcome.frames = tuple(frames)
    if not redactions:
        if header_text(header, BURNED_IN).upper() == "YES":
            raise WithholdError("BurnedInAnnotation is YES but no text was found to redact")
        header.BurnedInAnnotation = "NO"
        outcome.verdict = f"no text found in {len(frames)} frame(s): pixel data unchanged"
        return
    outcome.replacement = redact(
        source,
        full,
        image,
        redactions,
        fill=settings.fill,
        jpeg_quality=settings.jpeg_quality,
    )
    header.BurnedInAnnotation = "NO"
    for tag in (0x7FE00001, 0x7FE00002):  # Extended Offset Table: the fragments changed
        if image.encapsulated and tag in header:
            del header[tag]
    outcome.verdict = (
        f"redacted {outcome.boxes_redacted} box(es) in {len(redactions)} of {len(frames)} frame(s)"
    )
