"""The clean-pixel-data step: burned-in text found and blacked out in the pixels of one input.

Ultrasound, secondary captures, screenshots and some X-ray and endoscopy images carry names,
IDs and dates written into the pixels. With the ``clean-pixel-data`` option (CID 7050 code
113101) such an image is kept only after this step has looked at every frame and blacked out
what it found:

1. **Header signals** (:mod:`~dicomveil.cleaners.pixels.signals`) decide whether an image is
   looked at. Images without any signal are left to the engine as before.
2. **Rectangle rules** (:mod:`~dicomveil.cleaners.pixels.rules`, per manufacturer, model and
   image size) give regions that are always blacked out on matching images.
3. **Two detectors** on every frame find the rest: Tesseract OCR
   (:mod:`~dicomveil.cleaners.pixels.ocr`) and a text detection network
   (:mod:`~dicomveil.cleaners.pixels.network`); what either finds is painted on evidence
   (:mod:`~dicomveil.cleaners.pixels.detect`), each line a padded box.
4. **Redaction** (:mod:`~dicomveil.cleaners.pixels.redact`) fills every box of every frame
   with black (or a configured value) in the stored pixel values, and re-encodes compressed
   pixel data in its own transfer syntax.
5. **Fail closed**: the painted frames are decoded as they will be written and read again by
   both detectors; text found where nothing was painted is painted and read again, up to two
   more times, then the file is withheld.

Policy: Burned In Annotation becomes NO only when this has succeeded. Text found but not
redactable (no encoder for the transfer syntax, an unsupported pixel layout), pixel data
that cannot be decoded, a detector that is not installed, text still found after painting,
or an image whose header says YES but where nothing was found, withhold the file with a
stated reason (unless the profile allows the risk). An image with no text keeps its pixel
data byte-identical.

Reports (:class:`PixelOutcome`) hold boxes per frame, never the recognised text outside the
object itself (``Detection.text`` is shown with ``--show-values`` only: it is PHI).

The step is called by the engine's users with the engine (:class:`PixelEngine` says what it
reads of it), so that this package does not import the engine.
"""

from __future__ import annotations

import copy
import os
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

import dicomveil.cleaners.pixels.network as network
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
    missing = ocr.unavailable() or network.unavailable()
    if missing is not None:
        raise WithholdError(missing)
    header = source.dataset
    ts = source.transfer_syntax
    full = read_full(source)
    image = PixelImage.of(full, ts)
    detector = Detector(settings.ocr, settings.padding, rules.matching(header), image.size)
    frames: list[FrameReport] = []
    redactions: dict[int, tuple[Box, ...]] = {}
    views = (
        (index, *_views(image, frame, full))
        for index, frame in enumerate(decode_frames(full, ts, image))
    )
    for gray, report in _read_all(detector, views):
        index = report.frame
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
    lossy = {t: header[t] for t in _LOSSY_TAGS if t in header}  # redact() appends a step
    # Every painted frame is read again; in later rounds only those painted anew: a frame
    # painted as in the round before is encoded to the same bytes (frame by frame, the same
    # encoder) and reads the same, with nothing left.
    reread = set(redactions)
    for _round in range(_REREAD_ROUNDS + 1):
        for tag in _LOSSY_TAGS:
            if tag in lossy:
                header[tag] = copy.deepcopy(lossy[tag])
            elif tag in header:
                del header[tag]
        replacement = redact(
            source, full, image, redactions, fill=settings.fill, jpeg_quality=settings.jpeg_quality
        )
        left = _still_found(replacement, full, image, redactions, settings, reread)
        if not left:
            break
        for index, boxes in left.items():
            redactions[index] = tuple(sorted({*redactions.get(index, ()), *boxes}))
        reread = set(left)
    else:
        raise WithholdError(
            f"text was still found after painting and reading the output again "
            f"{_REREAD_ROUNDS + 1} times"
        )
    outcome.replacement = replacement
    header.BurnedInAnnotation = "NO"
    for tag in (0x7FE00001, 0x7FE00002):  # Extended Offset Table: the fragments changed
        if image.encapsulated and tag in header:
            del header[tag]
    painted = sum(len(boxes) for boxes in redactions.values())
    outcome.verdict = (
        f"redacted {painted} box(es) in {len(redactions)} of {len(frames)} frame(s); "
        f"read again after painting ({_round + 1} time(s)): no text left"
    )


# Fail closed: the output is read again, as it will be written; text found where nothing was
# painted is painted too and the output read again, up to _REREAD_ROUNDS more times; what
# still remains withholds the file. A finding counts when more than _UNPAINTED of its box is
# outside the painted boxes.
_REREAD_ROUNDS = 2
_PIXEL_DATA = 0x7FE00010
_UNPAINTED = 0.1
# Lossy Image Compression, its Ratio and Method: each redaction round starts from the input's.
_LOSSY_TAGS = (0x00282110, 0x00282112, 0x00282114)


def _views(image: PixelImage, frame: Any, full: Dataset) -> tuple[Any, Any]:
    """The frame as the detectors read it: its grey view, and its 8-bit colour (or None)."""
    shown = image.display(frame, full)
    gray = ocr.to_gray8(shown, invert=image.monochrome1)
    colour = shown if shown.ndim == 3 and shown.dtype.itemsize == 1 else None
    return gray, colour


def _still_found(
    replacement: PixelSource,
    full: Dataset,
    image: PixelImage,
    redactions: dict[int, tuple[Box, ...]],
    settings: PixelSettings,
    frames: set[int],
) -> dict[int, tuple[Box, ...]]:
    """Read the redacted pixel data as it will be written (decoded after re-encoding), the
    ``frames`` of it (painted frames); the boxes to paint for text found where nothing was
    painted, by frame."""
    written = Dataset()
    written.update(full)
    written.file_meta = full.file_meta
    data = replacement.data
    if replacement.encapsulated:
        data += b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # the sequence delimiter the writer adds
    # A new element: setting the value of the one ``written`` shares with ``full`` would make
    # the next round paint this output (JPEG re-compressed again) instead of the input.
    written[_PIXEL_DATA] = DataElement(
        _PIXEL_DATA,
        full[_PIXEL_DATA].VR,
        data,
        is_undefined_length=replacement.encapsulated,
    )
    for tag in (0x7FE00001, 0x7FE00002):
        if tag in written:
            del written[tag]
    detector = Detector(settings.ocr, settings.padding, (), image.size)
    left: dict[int, tuple[Box, ...]] = {}
    views = (
        (index, *_grounded(*_views(image, frame, written), redactions[index]))
        for index, frame in enumerate(decode_frames(written, image.transfer_syntax, image))
        # no text was found in the others (none appears by re-encoding), nor is any left in
        # the frames painted as they were when read before
        if index in frames
    )
    for _gray, report in _read_all(detector, views):
        painted = redactions[report.frame]
        unpainted = [d.box for d in report.found if _outside(d.box, painted) > _UNPAINTED]
        if unpainted:
            index = report.frame
            left[index] = tuple(b for b in report.redacted if any(b.overlaps(u) for u in unpainted))
    return left


def frame_threads() -> int:
    """How many frames of one image are read at once: ``DICOMVEIL_FRAME_THREADS``, else the
    machine's cores, at most 4."""
    value = os.environ.get("DICOMVEIL_FRAME_THREADS", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    return max(1, min(4, os.cpu_count() or 1))


def _read_all(
    detector: Detector, views: Iterable[tuple[int, Any, Any]]
) -> Iterator[tuple[Any, FrameReport]]:
    """Each frame's grey view and report, in the frames' order.

    The frames of a cine go to a pool of threads: the detectors spend their time in
    Tesseract's process and in onnxruntime, outside Python's lock. At most twice as many
    frames as threads are decoded ahead, so a long cine is never all in memory."""
    threads = frame_threads()
    if threads == 1:
        for index, gray, colour in views:
            yield gray, detector.frame(index, gray, colour)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="dicomveil-frames") as pool:
        pending: deque[tuple[Any, Future[FrameReport]]] = deque()
        for index, gray, colour in views:
            pending.append((gray, pool.submit(detector.frame, index, gray, colour)))
            if len(pending) >= 2 * threads:
                gray, report = pending.popleft()
                yield gray, report.result()
        while pending:
            gray, report = pending.popleft()
            yield gray, report.result()


def _grounded(gray: Any, colour: Any, painted: tuple[Box, ...]) -> tuple[Any, Any]:
    """The views with the painted boxes filled with the frame's ground (the median of the
    rest) instead of black, for reading again: Tesseract binarises a page as a whole, and a
    page of black boxes on faint noise makes it read the noise (seconds per frame)."""
    import numpy as np

    mask = np.zeros(gray.shape, dtype=bool)
    for box in painted:
        mask[box.y : box.bottom, box.x : box.right] = True
    if mask.all():
        return gray, colour
    gray = gray.copy()
    gray[mask] = np.median(gray[~mask])
    if colour is not None:
        colour = colour.copy()
        colour[mask] = np.median(colour[~mask], axis=0).astype(colour.dtype)
    return gray, colour


def _outside(box: Box, painted: tuple[Box, ...]) -> float:
    """The share of ``box`` outside the painted boxes."""
    import numpy as np

    inside = np.zeros((box.height, box.width), dtype=bool)
    for p in painted:
        x0, y0 = max(box.x, p.x) - box.x, max(box.y, p.y) - box.y
        x1, y1 = min(box.right, p.right) - box.x, min(box.bottom, p.bottom) - box.y
        if x1 > x0 and y1 > y0:
            inside[y0:y1, x0:x1] = True
    return 1.0 - float(inside.mean())
