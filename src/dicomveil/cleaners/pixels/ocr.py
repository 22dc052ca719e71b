"""OCR of burned-in text with Tesseract: views of a frame prepared for it and the words found.

Medical images are not documents: text is light on dark, small, coloured, or a few grey
levels off a grey band, and the background is speckle. Each frame is therefore turned into
dark text on a light ground and enlarged so that small text reaches the size Tesseract reads
best: the frame itself, windowed to 8 bits (1st to 99.9th percentile, so a few hot pixels do
not flatten it; colour: the brightest sample of each pixel, so coloured text stays bright).
Optional views (:class:`OcrSettings`): its local contrast (the frame minus a blurred copy of
itself, amplified), and a smoothed copy of noisy frames; and, on noisy frames, rows of
text-like marks (:func:`text_regions`) as words of confidence 0. They are off by default:
the text detection network (:mod:`dicomveil.cleaners.pixels.network`) is the second
detector, and :mod:`dicomveil.cleaners.pixels.detect` decides on the evidence of both.

Tesseract runs in sparse-text mode (``--psm 11``); what it reads is kept as a word when it
has a letter or digit, enough confidence and the shape of text. Words found in several views
are merged.

Optional: numpy, Pillow and pytesseract (``pip install 'dicomveil[pixels]'``) and the
Tesseract program (Debian: ``apt-get install tesseract-ocr``); :func:`unavailable` says what
is missing. The recognised text is kept in memory for ``--show-values`` only: it is PHI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image

INSTALL_HINT = (
    "install the optional packages (pip install 'dicomveil[pixels]') and Tesseract "
    "(Debian/Ubuntu: apt-get install tesseract-ocr)"
)


@dataclass(frozen=True, slots=True)
class Word:
    """A word Tesseract read, in the frame's pixel coordinates.

    Attributes
    ----------
    x, y : int
        The top-left corner.
    width, height : int
        The size in pixels.
    confidence : float
        Tesseract's confidence, 0 to 100 (0 for a row of text-like marks).
    text : str
        What was read: PHI, shown with ``--show-values`` only.
    """

    x: int
    y: int
    width: int
    height: int
    confidence: float
    text: str = field(default="", repr=False)  # PHI: shown with --show-values only


@dataclass(frozen=True)
class OcrSettings:
    """How hard to look.

    Attributes
    ----------
    min_confidence : float
        The least confidence of a word kept (Tesseract's, 0 to 100).
    languages : str
        Tesseract's languages (``eng``, ``eng+deu``).
    local_contrast : bool
        Also read the frame's local contrast (low-contrast text on bands and gradients).
    smoothed : bool
        Also read a smoothed view of frames noisier than ``noise_threshold``.
    min_height : int
        The least height of text, in the frame's pixels.
    noise_threshold : float
        Grey levels of noise above which the frame is also read smoothed.
    text_regions : bool
        On noisy frames, rows of text-like marks are boxes too, read or not.

    The extra views and the text regions are off by default: with the text detection
    network (:mod:`dicomveil.cleaners.pixels.network`) as the second detector they found
    nothing more on the tuning half of the independent corpus and doubled the time.

    Raises
    ------
    ValueError
        A confidence outside 0 to 100, or a least height below 1.
    """

    min_confidence: float = 40.0
    languages: str = "eng"
    local_contrast: bool = False
    smoothed: bool = False
    min_height: int = 5  # pixels, in the frame: smaller marks are not readable text
    noise_threshold: float = 4.0  # grey levels: noisier frames are also read smoothed
    # Noisy frames: text-like rows of marks are boxes too, even when Tesseract cannot read them.
    text_regions: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 100:
            raise ValueError("min_confidence is a Tesseract confidence, 0 to 100")
        if self.min_height < 1:
            raise ValueError("min_height is at least 1 pixel")


# Sparse text; no second reading of each line inverted (the views are dark text on light
# already, and the text detection network finds inverted panels): 40% faster on speckle.
_CONFIG = "--psm 11 -c tessedit_do_invert=0"


@cache
def unavailable() -> str | None:
    """Tell why OCR cannot run here (checked once per process).

    Returns
    -------
    str or None
        What is missing and how to install it; None when OCR can run.
    """
    try:
        import numpy  # noqa: F401
        import PIL  # noqa: F401
        import pytesseract
    except ImportError as exc:
        return f"OCR is not available ({exc.name} is missing): {INSTALL_HINT}"
    try:
        pytesseract.get_tesseract_version()
    except Exception:  # TesseractNotFoundError, or a broken installation
        return f"OCR is not available (the tesseract program is missing): {INSTALL_HINT}"
    return None


def to_gray8(frame: NDArray[Any], *, invert: bool = False) -> NDArray[np.uint8]:
    """Make an 8-bit grey view of a frame.

    Colour: the brightest sample of each pixel. More than 8 bits (or signed): windowed from
    the 1st to the 99.9th percentile.

    Parameters
    ----------
    frame : NDArray
        Rows x columns, or rows x columns x samples.
    invert : bool
        Invert the grey levels (MONOCHROME1: the lowest value is white).

    Returns
    -------
    NDArray[np.uint8]
        Rows x columns.
    """
    import numpy as np

    data = frame.max(axis=2) if frame.ndim == 3 else frame
    if data.dtype == np.uint8:
        gray = data
    else:
        values = data.astype(np.float32)
        low, high = (float(v) for v in np.percentile(values, (1.0, 99.9)))
        if high <= low:
            low, high = float(values.min()), float(values.max())
        span = high - low or 1.0
        gray = (np.clip((values - low) / span, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if invert:
        gray = 255 - gray
    return np.ascontiguousarray(gray)


def scale_for(rows: int, columns: int) -> int:
    """Choose how much to enlarge a frame before OCR: small text must reach ~20 pixels.

    Parameters
    ----------
    rows, columns : int
        The frame's size.

    Returns
    -------
    int
        The enlargement factor, 1 or more.
    """
    largest = max(rows, columns)
    if largest <= 512:
        return 3
    if largest <= 2048:
        return 2
    return 1


def noise_level(gray: NDArray[np.uint8]) -> float:
    """Estimate the noise where the frame is noisiest.

    Per tile of 32 x 32 pixels a robust estimate from neighbouring pixels' differences (text
    edges barely move a median), then the 90th percentile over tiles (speckle may fill only
    a sector of the frame).

    Parameters
    ----------
    gray : NDArray[np.uint8]
        The frame (:func:`to_gray8`).

    Returns
    -------
    float
        The noise's standard deviation, in grey levels.
    """
    import numpy as np

    diff = np.abs(np.diff(gray.astype(np.int16), axis=1)).astype(np.float32)
    rows, columns = diff.shape
    tile = 32
    estimates = [
        float(np.median(diff[y : y + tile, x : x + tile]))
        for y in range(0, max(1, rows - tile + 1), tile)
        for x in range(0, max(1, columns - tile + 1), tile)
    ]
    return float(np.percentile(estimates, 90)) * 1.4826 / 1.4142


def views(gray: NDArray[np.uint8], settings: OcrSettings) -> list[tuple[str, Image.Image]]:
    """Prepare the frame as Tesseract should see it: dark text on a light ground, enlarged.

    Parameters
    ----------
    gray : NDArray[np.uint8]
        The frame (:func:`to_gray8`).
    settings : OcrSettings
        Whether the local contrast view is made; above which noise a smoothed view is.

    Returns
    -------
    list[tuple[str, Image.Image]]
        Named views: the windowed frame; a smoothed copy when the frame is noisy; its local
        contrast.
    """
    import numpy as np
    from PIL import Image, ImageFilter

    light_text = float(np.median(gray)) < 128.0
    scale = scale_for(*gray.shape)
    plain = Image.fromarray(255 - gray if light_text else gray)
    result = [("windowed", _enlarge(plain, scale))]
    if settings.smoothed and noise_level(gray) > settings.noise_threshold:
        # Smoothing after enlarging keeps thin strokes that a median filter would erase.
        size = (plain.width * scale, plain.height * scale)
        smooth = plain.resize(size, Image.Resampling.BICUBIC)
        result.append(("smoothed", smooth.filter(ImageFilter.GaussianBlur(0.5 * scale))))
    if settings.local_contrast:
        blurred = np.asarray(Image.fromarray(gray).filter(ImageFilter.GaussianBlur(6)))
        detail = gray.astype(np.float32) - blurred.astype(np.float32)
        if light_text:
            detail = -detail
        local = np.clip(200.0 + 4.0 * detail, 0.0, 255.0).astype(np.uint8)
        result.append(("local contrast", _enlarge(Image.fromarray(local), scale)))
    return result


# Text regions (noisy frames): the mask is the frame smoothed by _SMOOTH pixels, above its
# local background by _DEVIATIONS times the background's spread (2.5 misses thin fonts on
# noise; 1.6 finds "text" in text-free noise); marks closer than _GAP_ALONG pixels along a
# row (_GAP_ACROSS across) are joined; a region is kept when a row through it crosses at least
# _STROKES ink strokes per pixel of its width (text: about 1-1.8; speckle grains: 0.3-0.9).
_SMOOTH = 0.7
_DEVIATIONS = 2.0
_GAP_ALONG = 6
_GAP_ACROSS = 2
_STROKES = 0.8


def text_mask(gray: NDArray[np.uint8], light_text: bool) -> NDArray[np.bool_]:
    """Find the ink of text, read or not.

    Parameters
    ----------
    gray : NDArray[np.uint8]
        The frame (:func:`to_gray8`).
    light_text : bool
        Text is lighter than its ground.

    Returns
    -------
    NDArray[np.bool_]
        The pixels that stand out from their neighbourhood, towards the text's side, by a
        few noise deviations (after a slight smoothing).
    """
    import numpy as np
    from PIL import Image, ImageFilter

    text_bright = Image.fromarray(np.ascontiguousarray(gray if light_text else 255 - gray))
    smooth = text_bright.filter(ImageFilter.GaussianBlur(_SMOOTH))
    values = np.asarray(smooth, dtype=np.float32)
    local = _background(smooth)
    above = values - local
    deviation = max(2.0, _spread(above))
    mask: NDArray[np.bool_] = above > _DEVIATIONS * deviation
    return mask


def _spread(residual: NDArray[np.float32]) -> float:
    """How far the background strays from its local level: per tile of 32 x 32 pixels the
    median absolute deviation (text is too sparse to move it; correlated speckle is measured
    as it is, unlike by neighbouring pixels' differences), then the 90th percentile over
    tiles (speckle may fill only a sector of the frame)."""
    import numpy as np

    rows, columns = residual.shape
    tile = 32
    estimates = [
        float(np.median(np.abs(residual[y : y + tile, x : x + tile])))
        for y in range(0, max(1, rows - tile + 1), tile)
        for x in range(0, max(1, columns - tile + 1), tile)
    ]
    return float(np.percentile(estimates, 90)) * 1.4826


def _background(image: Image.Image) -> NDArray[np.float32]:
    """The local background: the median of a neighbourhood of about 20 pixels, computed on a
    copy reduced 4 times (cheap, and a median keeps the edges of an ultrasound sector where a
    mean would blur them into false text)."""
    import numpy as np
    from PIL import Image, ImageFilter

    small = image.reduce(4) if min(image.size) >= 16 else image
    median = small.filter(ImageFilter.MedianFilter(5))
    median = median.resize(image.size, Image.Resampling.BILINEAR)
    return np.asarray(median, dtype=np.float32)


def text_regions(gray: NDArray[np.uint8], light_text: bool, settings: OcrSettings) -> list[Word]:
    """Find rows of text-like marks, whether or not Tesseract can read them.

    Privacy first: thin fonts on noise are often visible to a person and unreadable to
    Tesseract. Marks closer than a few pixels are joined; a region is kept when it has the
    height of text, is wider than high, is partly, not wholly, ink, and a row through it
    crosses strokes as often as one through text does.

    ``gray`` and ``light_text`` are as for :func:`text_mask`; ``settings`` gives the least
    height of text. Returns one word per region, with no text and confidence 0.
    """
    import numpy as np

    mask = text_mask(gray, light_text)
    joined = _close(_close(mask, _GAP_ALONG, axis=1), _GAP_ACROSS, axis=0)
    rows = gray.shape[0]
    tallest = max(settings.min_height, min(rows // 3, 64))
    wide: list[Word] = []
    narrow: list[Word] = []
    for x, y, right, bottom in _components(joined):
        width, height = right - x, bottom - y
        if not settings.min_height <= height <= tallest or width < 0.5 * height:
            continue
        marks = mask[y:bottom, x:right]
        if not 0.08 <= float(np.mean(marks)) <= 0.6:
            continue
        # Strokes: a row through text crosses a stroke every half a text height or so; one
        # through grains of speckle far less often.
        crossings = np.count_nonzero(np.diff(marks.astype(np.int8), axis=1) == 1)
        if crossings / width >= _STROKES:
            word = Word(x, y, width, height, 0.0)
            (wide if width >= 1.5 * height else narrow).append(word)
    # A short word ("ID") counts when it stands in a row beside a wider one, at its height.
    return wide + [word for word in narrow if any(_beside(word, other) for other in wide)]


def _beside(a: Word, b: Word) -> bool:
    """On one line of text: heights within a third, half overlapping, a text height apart."""
    lower, higher = sorted((a.height, b.height))
    overlap = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    gap = max(a.x, b.x) - min(a.x + a.width, b.x + b.width)
    return higher <= 1.35 * lower and overlap >= 0.5 * lower and gap <= higher


def _close(mask: NDArray[np.bool_], gap: int, axis: int) -> NDArray[np.bool_]:
    """Gaps of up to ``gap`` pixels along ``axis`` filled (a morphological closing)."""
    import numpy as np

    if gap <= 0:
        return mask
    reach = (gap + 1) // 2

    def spread(m: NDArray[np.bool_], fill: bool) -> NDArray[np.bool_]:
        pad = [(0, 0), (0, 0)]
        pad[axis] = (reach, reach)
        padded = np.pad(m, pad, constant_values=fill)
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1, axis=axis)
        return np.asarray(windows.all(axis=-1) if fill else windows.any(axis=-1), dtype=np.bool_)

    return spread(spread(mask, False), True)


def _components(mask: NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x, y, right, bottom) of the 8-connected components of a mask, from its
    runs along rows joined with a union-find."""
    import numpy as np

    padded = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    ys, xs = np.nonzero(np.diff(padded, axis=1))
    run_y, starts, ends = ys[0::2].tolist(), xs[0::2].tolist(), xs[1::2].tolist()
    parent = list(range(len(run_y)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start: dict[int, int] = {}
    for i, y in enumerate(run_y):
        row_start.setdefault(y, i)
    for i, y in enumerate(run_y):
        j = row_start.get(y + 1)
        if j is None:
            continue
        while j < len(run_y) and run_y[j] == y + 1 and starts[j] <= ends[i]:
            if ends[j] >= starts[i]:
                parent[root(j)] = root(i)
            j += 1
    boxes: dict[int, list[int]] = {}
    for i, y in enumerate(run_y):
        box = boxes.setdefault(root(i), [starts[i], y, ends[i], y + 1])
        box[0], box[1] = min(box[0], starts[i]), min(box[1], y)
        box[2], box[3] = max(box[2], ends[i]), max(box[3], y + 1)
    return [(b[0], b[1], b[2], b[3]) for b in boxes.values()]


def _enlarge(image: Image.Image, scale: int) -> Image.Image:
    from PIL import Image

    if scale == 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)


def find_words(gray: NDArray[np.uint8], settings: OcrSettings | None = None) -> list[Word]:
    """Find the words of text in a frame, merged over the views (:func:`views`).

    Each view is a page of its own: Tesseract binarises a page as a whole, so views with
    different histograms must not share one.

    Parameters
    ----------
    gray : NDArray[np.uint8]
        The frame (:func:`to_gray8`).
    settings : OcrSettings or None
        How hard to look (default: :class:`OcrSettings`'s defaults).

    Returns
    -------
    list[Word]
        The words, in the frame's coordinates; on noisy frames also rows of text-like marks
        (:func:`text_regions`).
    """
    import numpy as np
    import pytesseract

    settings = settings or OcrSettings()
    # Tesseract's own threads fight with dicomveil's worker processes: one thread each.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    rows, columns = gray.shape
    scale = scale_for(rows, columns)
    found: list[Word] = []
    for _name, image in views(gray, settings):
        data = pytesseract.image_to_data(
            image, lang=settings.languages, config=_CONFIG, output_type=pytesseract.Output.DICT
        )
        for i, raw_text in enumerate(data["text"]):
            left, upper = int(data["left"][i]), int(data["top"][i])
            width, height = int(data["width"][i]), int(data["height"][i])
            x, y = left // scale, upper // scale
            right, bottom = -(-(left + width) // scale), -(-(upper + height) // scale)
            text = str(raw_text).strip()
            word = Word(x, y, right - x, bottom - y, float(data["conf"][i]), text)
            if _is_text(word, settings, rows):
                found.append(word)
    if settings.text_regions and noise_level(gray) > settings.noise_threshold:
        found += text_regions(gray, float(np.median(gray)) < 128.0, settings)
    return merge_words(found)


def _is_text(word: Word, settings: OcrSettings, rows: int) -> bool:
    """A plausible word: a letter or digit, enough confidence, the shape of text."""
    alnum = sum(ch.isalnum() for ch in word.text)
    if alnum == 0 or word.confidence < settings.min_confidence:
        return False
    if word.height < settings.min_height or word.height > max(settings.min_height, rows // 3):
        return False
    # Short readings of noise: one or two characters need a confident reading.
    if alnum <= 2 and word.confidence < max(settings.min_confidence, 70.0):
        return False
    per_char = word.width / max(1, len(word.text))
    return 0.15 * word.height <= per_char <= 2.5 * word.height


def merge_words(words: list[Word]) -> list[Word]:
    """Keep one word per place: readings that overlap by half the smaller box are merged.

    Parameters
    ----------
    words : list[Word]
        Readings of one frame, from every view.

    Returns
    -------
    list[Word]
        The merged words, top to bottom and left to right; a merged word covers both
        readings and keeps the more confident one's text and confidence.
    """
    merged: list[Word] = []
    for word in sorted(words, key=lambda w: -w.confidence):
        for i, kept in enumerate(merged):
            if _overlap(word, kept) >= 0.5:
                x, y = min(word.x, kept.x), min(word.y, kept.y)
                right = max(word.x + word.width, kept.x + kept.width)
                bottom = max(word.y + word.height, kept.y + kept.height)
                merged[i] = Word(x, y, right - x, bottom - y, kept.confidence, kept.text)
                break
        else:
            merged.append(word)
    return sorted(merged, key=lambda w: (w.y, w.x))


def _overlap(a: Word, b: Word) -> float:
    width = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    height = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min(a.width * a.height, b.width * b.height) or 1
    return (width * height) / smaller
