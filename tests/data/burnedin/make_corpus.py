#!/usr/bin/env python3
"""Deterministic generator for a synthetic burned-in-text DICOM corpus.

Written 2026-12-05 by a session that had no access to the redactor's code.
Every pixel, string, UID and header value is derived from ``SEED``; nothing
depends on the clock, the network, the file system order or the process.

Usage::

    python make_corpus.py OUTDIR                 # generate corpus + key.json
    python make_corpus.py --check OUTDIR         # decode every file, validate key
    python make_corpus.py --check OUTDIR --compare OTHERDIR   # + byte comparison

See README.md (same folder) for the labelling rules and the key format.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import io
import json
import math
import os
import sys
from collections import Counter, namedtuple
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

SEED = 20261205
CORPUS_VERSION = "1.0"

# --------------------------------------------------------------------------
# Fonts
# --------------------------------------------------------------------------

_TT = "/usr/share/fonts/truetype"
_T1 = "/usr/share/fonts/X11/Type1"
FONT_FILES = {
    "DejaVuSans": f"{_TT}/dejavu/DejaVuSans.ttf",
    "DejaVuSans-Bold": f"{_TT}/dejavu/DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed": f"{_TT}/dejavu/DejaVuSansCondensed.ttf",
    "DejaVuSansMono": f"{_TT}/dejavu/DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold": f"{_TT}/dejavu/DejaVuSansMono-Bold.ttf",
    "DejaVuSerif": f"{_TT}/dejavu/DejaVuSerif.ttf",
    "LiberationSans": f"{_TT}/liberation/LiberationSans-Regular.ttf",
    "LiberationSans-Bold": f"{_TT}/liberation/LiberationSans-Bold.ttf",
    "LiberationSansNarrow": f"{_TT}/liberation/LiberationSansNarrow-Regular.ttf",
    "LiberationMono": f"{_TT}/liberation/LiberationMono-Regular.ttf",
    "LiberationSerif": f"{_TT}/liberation/LiberationSerif-Regular.ttf",
    "FreeSans": f"{_TT}/freefont/FreeSans.ttf",
    "FreeSansBold": f"{_TT}/freefont/FreeSansBold.ttf",
    "FreeMono": f"{_TT}/freefont/FreeMono.ttf",
    "FreeMonoBold": f"{_TT}/freefont/FreeMonoBold.ttf",
    "FreeSerif": f"{_TT}/freefont/FreeSerif.ttf",
    "NotoSansMono": f"{_TT}/noto/NotoSansMono-Regular.ttf",
    "URWGothic": f"{_T1}/URWGothic-Book.pfb",
    "NimbusMonoPS": f"{_T1}/NimbusMonoPS-Regular.pfb",
    "NimbusSansNarrow": f"{_T1}/NimbusSansNarrow-Regular.pfb",
}

# A hand-made 5x7 bitmap font (upper case only), the look of old scanner
# character generators.  '#' = ink.
_B = {
    "0": [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
    "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    "3": ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."],
    "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
    "6": ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
    "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
    "8": [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
    "9": [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],
    "A": [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "B": ["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."],
    "C": [".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."],
    "D": ["###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."],
    "E": ["#####", "#....", "#....", "####.", "#....", "#....", "#####"],
    "F": ["#####", "#....", "#....", "####.", "#....", "#....", "#...."],
    "G": [".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"],
    "H": ["#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "I": [".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "J": ["..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."],
    "K": ["#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"],
    "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
    "M": ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"],
    "N": ["#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"],
    "O": [".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
    "P": ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."],
    "Q": [".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"],
    "R": ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"],
    "S": [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
    "T": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."],
    "U": ["#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
    "V": ["#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."],
    "W": ["#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."],
    "X": ["#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"],
    "Y": ["#...#", "#...#", "#...#", ".#.#.", "..#..", "..#..", "..#.."],
    "Z": ["#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"],
    " ": [".....", ".....", ".....", ".....", ".....", ".....", "....."],
    ".": [".....", ".....", ".....", ".....", ".....", ".##..", ".##.."],
    ",": [".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."],
    ":": [".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."],
    "/": [".....", "....#", "...#.", "..#..", ".#...", "#....", "....."],
    "-": [".....", ".....", ".....", "#####", ".....", ".....", "....."],
    "^": ["..#..", ".#.#.", "#...#", ".....", ".....", ".....", "....."],
    "(": ["...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."],
    ")": [".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."],
    "#": [".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."],
    "%": ["##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"],
    "+": [".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."],
    "'": [".##..", "..#..", ".#...", ".....", ".....", ".....", "....."],
    "=": [".....", ".....", "#####", ".....", "#####", ".....", "....."],
    ">": [".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."],
    "<": ["...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."],
    "_": [".....", ".....", ".....", ".....", ".....", ".....", "#####"],
    "*": [".....", "#.#.#", ".###.", "#####", ".###.", "#.#.#", "....."],
    "!": ["..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."],
    "?": [".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."],
    "&": [".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"],
}
BITMAP_GLYPHS = {
    k: np.array([[c == "#" for c in row] for row in v], dtype=np.float32)
    for k, v in _B.items()
}

# key: font key, size: nominal pixel size, render: aa | aliased | nearest2x | bitmap
FontSpec = namedtuple("FontSpec", "key size render")


def bitmap_font(scale):
    return FontSpec("Bitmap5x7", 8 * scale, "bitmap")


THIN_FONTS = {"FreeMono", "NimbusMonoPS", "LiberationMono", "FreeSerif"}


def fspec(key, size, render):
    """FontSpec factory: nearest2x needs an even size >= 16 (base font >= 8 px),
    and thin Courier-like faces are anti-aliased below 13 px (aliased they lose
    strokes and stop being legible, which is not what this corpus is testing)."""
    size = int(size)
    if render == "nearest2x":
        if size < 16:
            render = "aliased"
        else:
            size -= size % 2
    base = size // 2 if render == "nearest2x" else size
    if key in THIN_FONTS and render != "aa" and base < 13:
        render = "aa"
    return FontSpec(key, size, render)


@lru_cache(maxsize=None)
def _ttf(key, size):
    return ImageFont.truetype(FONT_FILES[key], size)


def fmetrics(fs):
    """(ascent, descent) in pixels for line layout."""
    if fs.render == "bitmap":
        s = fs.size // 8
        return 7 * s, s
    scale = 2 if fs.render == "nearest2x" else 1
    a, d = _ttf(fs.key, fs.size // scale).getmetrics()
    return a * scale, d * scale


@lru_cache(maxsize=None)
def render(s, fs):
    """Return (alpha, dx, dy): a tight alpha mask of the ink of string ``s``
    and the offset of its top-left pixel from the text origin (left end of
    the baseline)."""
    if fs.render == "bitmap":
        scale = fs.size // 8
        cols = []
        for i, ch in enumerate(s):
            if ch not in BITMAP_GLYPHS:
                raise ValueError(f"bitmap font has no glyph {ch!r} in {s!r}")
            cols.append(BITMAP_GLYPHS[ch])
            if i < len(s) - 1:
                cols.append(np.zeros((7, 1), np.float32))
        a = np.hstack(cols)
        ys = np.nonzero(a.any(1))[0]
        xs = np.nonzero(a.any(0))[0]
        a = a[ys[0]: ys[-1] + 1, xs[0]: xs[-1] + 1]
        a = np.repeat(np.repeat(a, scale, 0), scale, 1)
        a.flags.writeable = False
        return a, int(xs[0]) * scale, (int(ys[0]) - 7) * scale
    scale = 2 if fs.render == "nearest2x" else 1
    if scale == 2 and (fs.size % 2 or fs.size < 16):
        raise ValueError(f"nearest2x needs an even size >= 16, got {fs.size}")
    font = _ttf(fs.key, fs.size // scale)
    l, t, r, b = font.getbbox(s, anchor="ls")
    pad = 6
    W, H = r - l + 2 * pad, b - t + 2 * pad
    im = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(im)
    d.fontmode = "L" if fs.render == "aa" else "1"
    ox, oy = pad - l, pad - t
    d.text((ox, oy), s, fill=255, font=font, anchor="ls")
    a = np.asarray(im, dtype=np.float32) / 255.0
    ys = np.nonzero(a.any(1))[0]
    xs = np.nonzero(a.any(0))[0]
    assert ys[0] > 0 and xs[0] > 0 and ys[-1] < H - 1 and xs[-1] < W - 1, s
    a = a[ys[0]: ys[-1] + 1, xs[0]: xs[-1] + 1]
    dx, dy = int(xs[0]) - ox, int(ys[0]) - oy
    if scale > 1:
        a = np.repeat(np.repeat(a, scale, 0), scale, 1)
        dx, dy = dx * scale, dy * scale
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a, dx, dy


def measure(s, fs):
    a, dx, dy = render(s, fs)
    return dx, dy, a.shape[1], a.shape[0]


def luma(c):
    c = np.asarray(c, dtype=np.float64)
    if c.ndim and c.shape[-1] == 3:
        return c[..., 0] * 0.299 + c[..., 1] * 0.587 + c[..., 2] * 0.114
    return c


# --------------------------------------------------------------------------
# Image helpers
# --------------------------------------------------------------------------


def _gk(s):
    r = max(1, int(math.ceil(3 * s)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / s) ** 2)
    return (k / k.sum()).astype(np.float32)


def _conv1d(a, k, axis):
    r = len(k) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="reflect")
    out = np.zeros(a.shape, dtype=np.float32)
    n = a.shape[axis]
    for i, w in enumerate(k):
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(i, i + n)
        out += w * p[tuple(sl)]
    return out


def gblur(a, sy, sx=None):
    sx = sy if sx is None else sx
    out = np.asarray(a, dtype=np.float32)
    if sy > 0:
        out = _conv1d(out, _gk(sy), 0)
    if sx > 0:
        out = _conv1d(out, _gk(sx), 1)
    return out


def smooth_field(rng, H, W, cell):
    """Smooth zero-mean unit-ish random field with correlation length ~cell px."""
    h, w = H // cell + 4, W // cell + 4
    n = rng.standard_normal((h, w)).astype(np.float32)
    im = Image.fromarray(n, "F").resize((w * cell, h * cell), Image.BICUBIC)
    a = np.asarray(im, dtype=np.float32)[2 * cell: 2 * cell + H, 2 * cell: 2 * cell + W]
    return a / (a.std() + 1e-6)


def draw_mask(H, W, fn):
    m = Image.new("L", (W, H), 0)
    fn(ImageDraw.Draw(m))
    return np.asarray(m, dtype=np.float32) / 255.0


def blend(img, alpha, color):
    if img.ndim == 3:
        c = np.asarray(color, dtype=np.float32).reshape(1, 1, 3)
        a = alpha[..., None]
    else:
        c = np.float32(color)
        a = alpha
    img *= 1 - a
    img += a * c


# --------------------------------------------------------------------------
# Document: frames + text boxes
# --------------------------------------------------------------------------


class Doc:
    def __init__(self, frames, maxval, notext=False):
        self.notext = notext  # text-free controls: layout is computed, nothing drawn
        self.frames = [np.asarray(f, dtype=np.float32).copy() for f in frames]
        self.maxval = float(maxval)
        self.rgb = self.frames[0].ndim == 3
        self.H, self.W = self.frames[0].shape[:2]
        self.boxes = []

    @property
    def n(self):
        return len(self.frames)

    def text(self, f, x, y, s, fs, color=None, *, ident, kind, hk=None,
             align="left", valign="baseline", contrast=None, cdir=0, min_contrast=0.32):
        """Draw ``s``; (x, y) is the baseline origin unless align/valign say
        otherwise ('right': x is the ink right edge (exclusive), 'center': x is
        the ink centre; valign 'top'/'bottom'/'middle' refer to the ink)."""
        a, dx, dy = render(s, fs)
        h, w = a.shape
        if align == "left":
            x0 = x + dx
        elif align == "right":
            x0 = x - w
        elif align == "center":
            x0 = x - w // 2
        elif align == "inkleft":
            x0 = x
        else:
            raise ValueError(align)
        if valign == "baseline":
            y0 = y + dy
        elif valign == "top":
            y0 = y
        elif valign == "bottom":
            y0 = y - h
        elif valign == "middle":
            y0 = y - h // 2
        else:
            raise ValueError(valign)
        x0, y0 = int(x0), int(y0)
        if x0 < 0 or y0 < 0 or x0 + w > self.W or y0 + h > self.H:
            raise ValueError(f"text {s!r} outside frame: {(x0, y0, x0 + w, y0 + h)} in {self.W}x{self.H}")
        if self.notext:
            return [x0, y0, x0 + w, y0 + h]
        for b in self.boxes:
            if b["frame"] == f:
                bx0, by0, bx1, by1 = b["ink"]
                if x0 < bx1 and bx0 < x0 + w and y0 < by1 and by0 < y0 + h:
                    raise ValueError(f"text {s!r} overlaps {b['text']!r}")
        img = self.frames[f]
        reg = img[y0: y0 + h, x0: x0 + w]
        if contrast is not None:
            bgc = np.median(reg.reshape(-1, 3), axis=0) if self.rgb else float(np.median(reg))
            bl = float(luma(bgc))
            delta = contrast * self.maxval
            sgn = cdir or (1 if bl + delta <= self.maxval * 0.97 else -1)
            if sgn > 0 and bl + delta > self.maxval:
                sgn = -1
            if sgn < 0 and bl - delta < 0:
                sgn = 1
            if self.rgb:
                color = tuple(int(round(min(255, max(0, v + sgn * delta)))) for v in bgc)
            else:
                color = int(round(min(self.maxval, max(0, bgc + sgn * delta))))
        if color is None:
            raise ValueError("no colour")
        elif contrast is None and min_contrast:
            color = self._ensure_contrast(img, x0, y0, w, h, color, min_contrast)
        blend(reg, a, color)
        box = dict(frame=f, ink=[x0, y0, x0 + w, y0 + h], text=s, identifying=bool(ident),
                   kind=kind, header_keyword=hk, font=fs.key, size_px=int(fs.size),
                   render=fs.render,
                   color=list(color) if isinstance(color, tuple) else int(round(float(color))),
                   noise_over_text=False)
        self.boxes.append(box)
        return box["ink"]

    def _ensure_contrast(self, img, x0, y0, w, h, color, thr):
        """Push a fixed colour towards white or black (keeping its hue) until its
        luma differs from the local background median by at least thr*maxval."""
        X0, Y0 = max(0, x0 - 3), max(0, y0 - 3)
        X1, Y1 = min(self.W, x0 + w + 3), min(self.H, y0 + h + 3)
        reg = img[Y0:Y1, X0:X1]
        bl = float(np.median(luma(reg.reshape(-1, 3)))) if self.rgb else float(np.median(reg))
        c = np.asarray(color, dtype=np.float64)
        cl = float(luma(c))
        M = self.maxval
        if abs(cl - bl) >= thr * M:
            return color
        if bl + thr * M <= M * 0.98 and (cl >= bl or bl - thr * M < 0):
            target = bl + thr * M
            t = (target - cl) / max(M - cl, 1e-6)
            c = c + t * (M - c)
        else:
            target = max(0.0, bl - thr * M)
            c = c * (target / max(cl, 1e-6))
        c = np.clip(np.round(c), 0, M)
        return tuple(int(v) for v in c) if self.rgb else int(c)

    def lines(self, f, x, ytop, items, fs, color=None, *, align="left", gap=2, **kw):
        """Stack lines downward from ytop.  items: (text, ident, kind, hk)."""
        asc, desc = fmetrics(fs)
        y = ytop
        prev_bottom = ytop
        out = []
        for it in items:
            if it is None:
                y += (asc + desc + gap) // 2
                continue
            s, ident, kind, hk = it
            _, dy, _, h = measure(s, fs)
            base = max(y + asc, prev_bottom + 1 - dy)  # accents may rise above the ascent
            box = self.text(f, x, base, s, fs, color, ident=ident, kind=kind, hk=hk, align=align, **kw)
            out.append(box)
            prev_bottom = base + dy + h
            y = base - asc + asc + desc + gap
        return y, out

    def gfx(self, f, fn, color, text_related=False):
        if self.notext and text_related:
            return
        a = draw_mask(self.H, self.W, fn)
        blend(self.frames[f], a, color)

    def noise(self, f, rng, sigma, rect=None, mult=False):
        img = self.frames[f]
        if rect is None:
            rect = (0, 0, self.W, self.H)
        x0, y0, x1, y1 = rect
        reg = img[y0:y1, x0:x1]
        n = rng.standard_normal(reg.shape[:2]).astype(np.float32) * sigma
        if self.rgb:
            n = n[..., None] + rng.standard_normal(reg.shape).astype(np.float32) * (sigma * 0.3)
        if mult:
            reg *= 1 + n / self.maxval
        else:
            reg += n
        np.clip(reg, 0, self.maxval, out=reg)
        for b in self.boxes:
            if b["frame"] == f:
                bx0, by0, bx1, by1 = b["ink"]
                if bx0 < x1 and x0 < bx1 and by0 < y1 and y0 < by1:
                    b["noise_over_text"] = True

    def finish(self, dtype):
        out = []
        for fr in self.frames:
            a = np.clip(np.round(fr), 0, self.maxval).astype(dtype)
            out.append(a)
        arr = np.stack(out)
        for b in self.boxes:
            x0, y0, x1, y1 = b["ink"]
            fr = arr[b["frame"]].astype(np.float64)
            X0, Y0 = max(0, x0 - 3), max(0, y0 - 3)
            X1, Y1 = min(self.W, x1 + 3), min(self.H, y1 + 3)
            ring = np.ones((Y1 - Y0, X1 - X0), bool)
            ring[y0 - Y0: y1 - Y0, x0 - X0: x1 - X0] = False
            vals = fr[Y0:Y1, X0:X1][ring]
            bg = float(np.median(luma(vals))) if ring.any() else 0.0
            b["contrast"] = round(abs(float(luma(b["color"])) - bg) / self.maxval, 3)
            b["x0"], b["y0"] = max(0, x0 - 1), max(0, y0 - 1)
            b["x1"], b["y1"] = min(self.W, x1 + 1), min(self.H, y1 + 1)
        return arr


# --------------------------------------------------------------------------
# Fake identities
# --------------------------------------------------------------------------

LAST = ["HARTMANN", "OKAFOR", "LINDQVIST", "MORENO", "TANAKA", "BRENNAN", "KOWALSKI",
        "DUBOIS", "NAKAMURA", "FITZGERALD", "ABERNATHY", "SORENSEN", "RAMIREZ", "OYELARAN",
        "PETROV", "MACLEOD", "VASQUEZ", "ACHTERBERG", "WOJCIK", "DELACROIX", "QUILLFEATHER",
        "BALASUBRAMANIAN", "OSTROWSKA", "HAVERKAMP", "O'NEILL", "SMITH-JONES", "MÜLLER",
        "NUÑEZ", "BJÖRKLUND", "LEFÈVRE"]
FIRST_F = ["ELEANOR", "PRIYA", "INGRID", "AKIKO", "CHIAMAKA", "LUCIA", "SAOIRSE", "HELENA",
           "MEI", "ASTRID", "ROSALIND", "YASMIN", "GRETA", "NOOR", "BEATRIZ"]
FIRST_M = ["MARCUS", "TOMASZ", "DESMOND", "RAFAEL", "GUNNAR", "BENEDIKT", "YUSUF", "ORLANDO",
           "KWAME", "JOSÉ", "ANSELM", "DMITRI", "LACHLAN", "TEODOR", "EMEKA"]
INSTITUTIONS = [
    ("RIVERSIDE GENERAL HOSPITAL", "Riverside Gen. Hosp."),
    ("ST. ALDRIC MEDICAL CENTER", "St Aldric MC"),
    ("NORTHFIELD COMMUNITY CLINIC", "Northfield Clinic"),
    ("LAKESHORE IMAGING CENTRE", "Lakeshore Imaging"),
    ("MERCY VALE HOSPITAL", "Mercy Vale Hosp"),
    ("HIGHGATE UNIVERSITY HOSPITAL", "Highgate Univ. Hosp."),
    ("BRAMBLEWOOD HEALTH CENTRE", "Bramblewood Health"),
    ("EASTON COUNTY MEDICAL CENTER", "Easton County MC"),
    ("KINGSBRIDGE CHILDREN'S HOSPITAL", "Kingsbridge Children's"),
    ("ORCHARD PARK RADIOLOGY", "Orchard Park Rad."),
]
PHYS_LAST = ["ABARA", "STEINER", "KHOURY", "LINDGREN", "PATEL", "ROSSI", "OKONKWO",
             "VANCE", "MORIMOTO", "HALVORSEN", "DUCHARME", "ESPOSITO"]
PHYS_FIRST = ["ANNA", "VIKRAM", "SELMA", "GEORGE", "NADIA", "OTTO", "FIONA", "RAJ", "CLAIRE", "IVAN"]
MON = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


class Identity:
    def __init__(self, rng):
        self.sex = "F" if rng.random() < 0.5 else "M"
        self.last = pick(rng, LAST)
        self.first = pick(rng, FIRST_F if self.sex == "F" else FIRST_M)
        base = _dt.date(2019, 1, 1)
        self.study = base + _dt.timedelta(days=int(rng.integers(0, 2900)))
        age_days = int(rng.integers(2 * 365, 95 * 365))
        self.dob = self.study - _dt.timedelta(days=age_days)
        self.age = (self.study.year - self.dob.year
                    - ((self.study.month, self.study.day) < (self.dob.month, self.dob.day)))
        self.study_start = int(rng.integers(7 * 3600, 19 * 3600))
        self.acq = self.study_start + int(rng.integers(60, 1500))  # seconds of day
        st = int(rng.integers(4))
        digits = "".join(str(int(d)) for d in rng.integers(0, 10, 9))
        if st == 0:
            self.pid = digits[:8]
        elif st == 1:
            self.pid = pick(rng, ["RG", "HX", "MV", "KB"]) + digits[:7]
        elif st == 2:
            self.pid = f"{digits[:3]}-{digits[3:6]}-{digits[6:9]}"
        else:
            self.pid = "00" + digits[:8]
        d2 = "".join(str(int(d)) for d in rng.integers(0, 10, 12))
        self.accession = pick(rng, ["A", "RA", "ACC", "E"]) + self.study.strftime("%y%m%d") + d2[:5]
        self.exam_no = pick(rng, ["Exam# ", "Enc ", "Visit ", "Case "]) + d2[5:11]
        inst = pick(rng, INSTITUTIONS)
        self.institution, self.inst_short = inst
        self.ref_last, self.ref_first = pick(rng, PHYS_LAST), pick(rng, PHYS_FIRST)
        self.op_last, self.op_first = pick(rng, PHYS_LAST), pick(rng, PHYS_FIRST)
        self.phone = self._phone(rng)

    @staticmethod
    def _phone(rng):
        d = [str(int(x)) for x in rng.integers(0, 10, 6)]
        st = int(rng.integers(4))
        if st == 0:
            return f"(555) 01{d[0]}-{d[1]}{d[2]}{d[3]}{d[4]}"
        if st == 1:
            return f"555-01{d[0]}{d[1]}"
        if st == 2:
            return f"+1 555 01{d[0]} {d[1]}{d[2]}{d[3]}{d[4]}"
        return f"555.01{d[0]}.{d[1]}{d[2]}{d[3]}{d[4]}"

    # ---- formatting ---------------------------------------------------
    def name(self, style):
        L, F = self.last, self.first
        if style == "caret":
            return f"{L}^{F}"
        if style == "comma":
            return f"{L}, {F}"
        if style == "space":
            return f"{L} {F}"
        if style == "title":
            return f"{F.title()} {L.title()}"
        if style == "lastfirst_title":
            return f"{L.title()}, {F.title()}"
        if style == "initial":
            return f"{L}, {F[0]}."
        raise ValueError(style)

    @staticmethod
    def fdate(d, style):
        y, m, dd = d.year, d.month, d.day
        return {
            "us": f"{m:02d}/{dd:02d}/{y}",
            "eu": f"{dd:02d}.{m:02d}.{y}",
            "iso": f"{y}-{m:02d}-{dd:02d}",
            "dicom": f"{y}{m:02d}{dd:02d}",
            "dmon": f"{dd:02d}-{MON[m - 1]}-{y}",
            "mond": f"{MON[m - 1]} {dd:02d} {y}",
            "slash_eu": f"{dd:02d}/{m:02d}/{y}",
            "short": f"{dd:02d}/{m:02d}/{y % 100:02d}",
        }[style]

    @staticmethod
    def ftime(sec, style):
        sec = float(sec)
        h, m = int(sec // 3600) % 24, int(sec // 60) % 60
        s = int(sec) % 60
        if style == "hms":
            return f"{h:02d}:{m:02d}:{s:02d}"
        if style == "hm":
            return f"{h:02d}:{m:02d}"
        if style == "ampm":
            return f"{(h - 1) % 12 + 1}:{m:02d}:{s:02d} {'AM' if h < 12 else 'PM'}"
        if style == "hms_cs":
            cs = int(round((sec - math.floor(sec)) * 100)) % 100
            return f"{h:02d}:{m:02d}:{s:02d}.{cs:02d}"
        raise ValueError(style)

    def dicom_time(self, sec):
        sec = int(sec)
        return f"{sec // 3600:02d}{sec // 60 % 60:02d}{sec % 60:02d}"


# Header plan: which identifying facts go into the DICOM header.
HEADER_KEYS = ["name", "pid", "dob", "age", "date", "time", "accession", "institution",
               "referring", "operator"]
HK = {"name": "PatientName", "pid": "PatientID", "dob": "PatientBirthDate", "age": "PatientAge",
      "date": "StudyDate", "time": "ContentTime", "accession": "AccessionNumber",
      "institution": "InstitutionName", "referring": "ReferringPhysicianName",
      "operator": "OperatorsName"}


def header_plan(rng):
    probs = dict(name=0.7, pid=0.75, dob=0.5, age=0.4, date=0.7, time=0.5, accession=0.5,
                 institution=0.55, referring=0.4, operator=0.35)
    plan = {k: bool(rng.random() < p) for k, p in probs.items()}
    if not (plan["name"] or plan["pid"]):
        plan["pid" if rng.random() < 0.5 else "name"] = True
    return plan


class Ctx:
    """Per-case context: rng, identity, header plan and text helpers."""

    def __init__(self, family, idx, control, seed=SEED):
        self.family, self.idx, self.control = family, idx, control
        fam_code = {"us": 1, "sc": 2, "xr": 3, "es": 4}[family]
        self.rng = np.random.default_rng([seed, fam_code, int(control), idx])
        self.id = Identity(self.rng)
        self.plan = header_plan(self.rng)

    def hk(self, key):
        """Header keyword for an identifying fact if it is in the header."""
        return HK[key] if self.plan.get(key) else None


# --------------------------------------------------------------------------
# DICOM writing
# --------------------------------------------------------------------------

SOP = {
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "USMF": "1.2.840.10008.5.1.4.1.1.3.1",
    "SC": "1.2.840.10008.5.1.4.1.1.7",
    "SCMF_BYTE": "1.2.840.10008.5.1.4.1.1.7.2",
    "SCMF_WORD": "1.2.840.10008.5.1.4.1.1.7.3",
    "SCMF_RGB": "1.2.840.10008.5.1.4.1.1.7.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "ES": "1.2.840.10008.5.1.4.1.1.77.1.1",
    "ESVIDEO": "1.2.840.10008.5.1.4.1.1.77.1.1.1",
}

SYNTAX = {
    "native": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg_baseline": JPEGBaseline8Bit,
    "jpegls_lossless": JPEGLSLossless,
    "j2k_lossless": JPEG2000Lossless,
    "j2k_lossy": JPEG2000,
}
LOSSY = {"jpeg_baseline", "j2k_lossy"}
SYN8 = ["native", "rle", "jpeg_baseline", "jpegls_lossless", "j2k_lossless", "j2k_lossy"]
SYN16 = ["native", "rle", "jpegls_lossless", "j2k_lossless", "j2k_lossy"]


def uid(ctx, what):
    return generate_uid(entropy_srcs=[str(SEED), CORPUS_VERSION, ctx.family,
                                      str(int(ctx.control)), str(ctx.idx), what])


def _pn(last, first):
    return f"{last}^{first}"


def build_header(ctx, modality, sop_key, manufacturer, model, burned_attr, series_desc,
                 station=None):
    i, p = ctx.id, ctx.plan
    ds = Dataset()
    values = [i.last, i.first, i.institution, i.ref_last, i.op_last]
    if any(ord(c) > 127 for v in values for c in v):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SOP[sop_key]
    ds.SOPInstanceUID = uid(ctx, "sop")
    ds.StudyDate = i.study.strftime("%Y%m%d") if p["date"] else ""
    if p["date"]:
        ds.SeriesDate = ds.StudyDate
        ds.ContentDate = ds.StudyDate
    ds.StudyTime = i.dicom_time(i.study_start) if p["date"] else ""
    if p["time"]:
        ds.ContentTime = i.dicom_time(i.acq)
    ds.AccessionNumber = i.accession if p["accession"] else ""
    ds.Modality = modality
    ds.ConversionType = "WSD" if sop_key.startswith("SC") else None
    if ds.ConversionType is None:
        del ds.ConversionType
    ds.Manufacturer = manufacturer
    if p["institution"]:
        ds.InstitutionName = i.institution
    ds.ReferringPhysicianName = _pn(i.ref_last, i.ref_first) if p["referring"] else ""
    if station:
        ds.StationName = station
    ds.StudyDescription = series_desc
    ds.SeriesDescription = series_desc
    if p["operator"]:
        ds.OperatorsName = _pn(i.op_last, i.op_first)
    ds.ManufacturerModelName = model
    ds.PatientName = _pn(i.last, i.first) if p["name"] else ""
    ds.PatientID = i.pid if p["pid"] else ""
    ds.PatientBirthDate = i.dob.strftime("%Y%m%d") if p["dob"] else ""
    ds.PatientSex = i.sex
    if p["age"]:
        ds.PatientAge = f"{i.age:03d}Y"
    if burned_attr is not None:
        ds.BurnedInAnnotation = burned_attr
    ds.StudyInstanceUID = uid(ctx, "study")
    ds.SeriesInstanceUID = uid(ctx, "series")
    ds.StudyID = str(ctx.idx + 1)
    ds.SeriesNumber = 1 + ctx.idx % 7
    ds.InstanceNumber = 1
    return ds


def header_identifiers(ds):
    out = {}
    for kw in ["PatientName", "PatientID", "PatientBirthDate", "PatientAge", "StudyDate",
               "StudyTime", "ContentTime", "AccessionNumber", "InstitutionName",
               "ReferringPhysicianName", "OperatorsName"]:
        v = ds.get(kw)
        if v not in (None, ""):
            out[kw] = str(v)
    return out


def set_pixel_module(ds, arr, photometric, bits_stored):
    frames = arr.shape[0]
    rgb = arr.ndim == 4
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric
    if rgb:
        ds.PlanarConfiguration = 0
    if frames > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0


def encode(ds, arr, syntax, rgb_ybr=False, j2k_cr=12, jpeg_quality=90):
    """Attach pixel data to ds in the requested transfer syntax."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    rgb = arr.ndim == 4
    frames = arr.shape[0]
    single = arr[0] if frames == 1 and "NumberOfFrames" not in ds else arr
    raw_bytes = arr.nbytes
    if syntax == "native":
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW" if arr.dtype.itemsize == 2 else "OB"
    elif syntax == "jpeg_baseline":
        assert arr.dtype == np.uint8
        chunks = []
        for fr in arr:
            b = io.BytesIO()
            Image.fromarray(fr).save(b, "JPEG", quality=jpeg_quality, subsampling=1,
                                     optimize=False)
            chunks.append(b.getvalue())
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        if rgb:
            ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate(chunks, has_bot=True)
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{raw_bytes / sum(len(c) for c in chunks):.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        kw = dict(generate_instance_uid=False)
        if syntax == "rle":
            kw["encoding_plugin"] = "pydicom"
        if syntax in ("j2k_lossless", "j2k_lossy") and rgb and rgb_ybr:
            ds.PhotometricInterpretation = "YBR_RCT" if syntax == "j2k_lossless" else "YBR_ICT"
        if syntax == "j2k_lossy":
            kw["j2k_cr"] = [float(j2k_cr)]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(SYNTAX[syntax], single, **kw)
        if syntax == "j2k_lossy":
            n = sum(len(x) for x in pydicom.encaps.generate_fragments(ds.PixelData))
            ds.LossyImageCompression = "01"
            ds.LossyImageCompressionRatio = f"{raw_bytes / n:.2f}"
            ds.LossyImageCompressionMethod = "ISO_15444_1"
    ds.file_meta.TransferSyntaxUID = SYNTAX[syntax]
    return ds


def write_case(outdir, fname, ctx, ds, doc, dtype, photometric, bits_stored, syntax,
               family, variant, extra=None, rgb_ybr=False, j2k_cr=12, jpeg_quality=90,
               multiframe_attr=False):
    arr = doc.finish(dtype)
    if multiframe_attr or arr.shape[0] > 1:
        ds.NumberOfFrames = arr.shape[0]
    set_pixel_module(ds, arr, photometric, bits_stored)
    # identify the header value (if any) behind each identifying box
    hdr = header_identifiers(ds)
    for b in doc.boxes:
        kwd = b["header_keyword"]
        if kwd and kwd not in hdr:
            b["header_keyword"] = None
            kwd = None
        if kwd:
            hv = hdr[kwd]
            b["header_match"] = "exact" if hv in b["text"] else "reformatted"
        else:
            b["header_match"] = None
        if not b["identifying"]:
            assert b["header_keyword"] is None
    encode(ds, arr, syntax, rgb_ybr=rgb_ybr, j2k_cr=j2k_cr, jpeg_quality=jpeg_quality)
    path = os.path.join(outdir, fname)
    ds.save_as(path, enforce_file_format=True)
    boxes = []
    for b in doc.boxes:
        boxes.append({k: b[k] for k in ["frame", "x0", "y0", "x1", "y1", "text", "identifying",
                                        "kind", "header_keyword", "header_match", "ink", "font",
                                        "size_px", "render", "color", "contrast",
                                        "noise_over_text"]})
    entry = dict(
        file=fname, family=family, variant=variant, control=bool(ctx.control),
        modality=str(ds.Modality), sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=syntax, transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        lossy=syntax in LOSSY, photometric=str(ds.PhotometricInterpretation),
        bits_allocated=int(ds.BitsAllocated), bits_stored=int(ds.BitsStored),
        samples_per_pixel=int(ds.SamplesPerPixel), rows=int(ds.Rows), columns=int(ds.Columns),
        frames=int(arr.shape[0]),
        burned_in_annotation_attr=str(ds.BurnedInAnnotation) if "BurnedInAnnotation" in ds else None,
        header_identifiers=hdr,
        source_pixel_sha256=hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(),
        boxes=boxes,
    )
    if extra:
        entry.update(extra)
    return entry


def burned_attr(ctx, has_text):
    """Real files are inconsistent: mostly YES when text is present, sometimes
    absent or (wrongly) NO."""
    r = ctx.rng.random()
    if not has_text:
        return "NO" if r < 0.6 else None
    if r < 0.78:
        return "YES"
    if r < 0.9:
        return None
    return "NO"


# --------------------------------------------------------------------------
# Ultrasound
# --------------------------------------------------------------------------

class USGeom:
    def __init__(self, kind, W, H, top, bottom_margin, rng):
        self.kind = kind
        self.top = top
        if kind == "linear":
            w = int(W * rng.uniform(0.46, 0.56))
            self.x0 = int(W * 0.47) - w // 2
            self.x1 = self.x0 + w
            self.y0 = top + 8
            self.y1 = H - bottom_margin
            self.skin_y = self.y0
            self.depth_px = self.y1 - self.y0
            self.right = self.x1
            self.left = self.x0
            self.cx = (self.x0 + self.x1) // 2
            return
        if kind == "convex":
            self.half = rng.uniform(0.50, 0.62)
            self.r0 = int(H * rng.uniform(0.10, 0.16))
        else:  # phased
            self.half = rng.uniform(0.66, 0.76)
            self.r0 = 6
        self.cx = int(W * rng.uniform(0.45, 0.49))
        self.cy = top + 8 - self.r0
        self.r1 = (H - bottom_margin) - self.cy
        self.skin_y = top + 8
        self.depth_px = self.r1 - self.r0
        self.right = int(self.cx + self.r1 * math.sin(self.half))
        self.left = int(self.cx - self.r1 * math.sin(self.half))

    def coords(self, H, W):
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        if self.kind == "linear":
            inside = (xx >= self.x0) & (xx < self.x1) & (yy >= self.y0) & (yy < self.y1)
            depth = (yy - self.y0) / self.depth_px
            return inside, depth, xx, yy
        dx, dy = xx - self.cx, yy - self.cy
        r = np.hypot(dx, dy)
        th = np.arctan2(dx, dy)
        inside = (r >= self.r0) & (r <= self.r1) & (np.abs(th) <= self.half)
        depth = (r - self.r0) / self.depth_px
        return inside, depth, xx, yy

    def point(self, depth_frac, lat_frac):
        """Image point at relative depth (0..1) and lateral position (-1..1)."""
        if self.kind == "linear":
            return (self.x0 + (lat_frac + 1) / 2 * (self.x1 - self.x0),
                    self.y0 + depth_frac * self.depth_px)
        r = self.r0 + depth_frac * self.depth_px
        th = lat_frac * self.half
        return self.cx + r * math.sin(th), self.cy + r * math.cos(th)


def us_frames(rng, H, W, geom, nframes):
    """B-mode speckle frames (float 0..255) inside the sector, 0 outside."""
    inside, depth, xx, yy = geom.coords(H, W)
    base = np.clip(1.0 + 0.3 * smooth_field(rng, H, W, 40) + 0.12 * smooth_field(rng, H, W, 12), 0.2, None)
    # structures (ellipses) with small breathing motion
    structs = []
    for k in range(int(rng.integers(2, 5))):
        d, l = rng.uniform(0.25, 0.8), rng.uniform(-0.6, 0.6)
        cx, cy = geom.point(d, l)
        structs.append(dict(cx=cx, cy=cy, a=rng.uniform(14, 50), b=rng.uniform(10, 36),
                            ang=rng.uniform(0, math.pi), level=pick(rng, [0.03, 0.05, 0.5, 1.8])))
    organ_d = rng.uniform(0.15, 0.3)
    bright_d = rng.uniform(0.55, 0.85)
    spk_prev = None
    att = np.exp(-1.1 * depth) * np.exp(0.9 * depth)  # attenuation + TGC
    frames = []
    amp = rng.uniform(2.0, 4.0)
    for t in range(nframes):
        off = amp * math.sin(2 * math.pi * t / max(nframes, 2))
        E = base.copy()
        # skin, fat and fascia layers
        dd = depth - off / geom.depth_px
        E[dd < 0.02] *= 3.0
        fat = (dd >= 0.02) & (dd < organ_d)
        E[fat] *= 0.55
        E[np.abs(dd - organ_d) < 0.008] *= 2.8
        # a bright curved interface (diaphragm-like)
        wav = bright_d + 0.04 * np.sin((xx / W) * 5.0 + 1.3)
        E[np.abs(dd - wav) < 0.012] *= 3.5
        E[dd > wav + 0.012] *= 0.7
        for s in structs:
            ca, sa = math.cos(s["ang"]), math.sin(s["ang"])
            ux = (xx - s["cx"]) * ca + (yy - s["cy"] - off) * sa
            uy = -(xx - s["cx"]) * sa + (yy - s["cy"] - off) * ca
            q = (ux / s["a"]) ** 2 + (uy / s["b"]) ** 2
            m = q < 1
            E[m] = E[m] * 0.1 + s["level"] * 0.9 * (1 if s["level"] > 0.1 else 0.2)
            if s["level"] < 0.1:  # posterior enhancement
                shadow = (np.abs(ux) < s["a"] * 0.8) & (uy > 0) & (uy < s["b"] * 4) & ~m
                E[shadow] *= 1.35
        new = (gblur(rng.standard_normal((H, W)), 1.0, 2.2)
               + 1j * gblur(rng.standard_normal((H, W)), 1.0, 2.2))
        spk = new if spk_prev is None else 0.75 * spk_prev + 0.66 * new
        spk_prev = spk
        I = E * (np.abs(spk) ** 2) * att
        I = I / (np.mean(I[inside]) + 1e-6)
        db = 10 * np.log10(I + 1e-3)
        v = np.clip((db + 22.0) / 30.0, 0, 1) ** 1.1 * 235.0
        v[~inside] = 0
        frames.append(v.astype(np.float32))
    return frames, inside


US_PARAM_SETS = [
    ["2D", "G 52", "DR 65", "FR 28Hz", "AO 100%"],
    ["B", "Gn 48", "C 7", "P Med", "Frq Gen"],
    ["2D", "Gain 60", "DR 72", "FR 19", "Map D"],
    ["THI", "G 55", "DR 60", "FR 33Hz", "SRI 2"],
]
US_PRESETS = [("C5-1", "Abd General"), ("C1-6", "Renal"), ("L12-3", "Thyroid"),
              ("S5-1", "Cardiac"), ("C4-2", "OB 2/3"), ("L9", "Vascular")]
US_ANNOT = ["LIVER", "RT KIDNEY LONG", "GB", "SAG", "TRV MID", "LT LOBE", "CBD", "SPLEEN",
            "AORTA PROX", "BLADDER"]
US_VENDORS = [("Nimbus Sonics", "NS-7"), ("Arclight Medical", "Vista 3"),
              ("Halden Imaging", "Echo Pro 9")]


TTF_FAMILIES = ["DejaVuSans", "LiberationSans", "FreeSans", "DejaVuSansCondensed",
                "LiberationSansNarrow", "URWGothic", "NimbusSansNarrow", "DejaVuSansMono",
                "LiberationMono", "NotoSansMono", "NimbusMonoPS", "FreeMono", "DejaVuSerif",
                "LiberationSerif", "FreeSerif", "DejaVuSans-Bold", "LiberationSans-Bold",
                "FreeSansBold", "DejaVuSansMono-Bold", "FreeMonoBold"]


def fold(s):
    """Upper-case ASCII fold for the 5x7 bitmap font."""
    import unicodedata
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c)).upper()


def gen_us(ctx, outdir, fname, spec):
    rng, I = ctx.rng, ctx.id
    W, H = spec["size"]
    rgb, nf, layout, control = spec["rgb"], spec["frames"], spec["layout"], ctx.control
    bitmap = layout == "C"
    fam = spec.get("font") or pick(rng, TTF_FAMILIES)
    rmode = spec.get("render") or ("aa" if rng.random() < 0.7 else "aliased")

    def FS(size):
        if bitmap:
            return bitmap_font(max(1, min(3, int(round(size / 8)))))
        return fspec(fam, int(size), rmode)

    def T(s):
        return fold(s) if bitmap else s

    s_hdr = int(rng.integers(11, 16))
    s_par = int(rng.integers(9, 13))
    s_ann = int(rng.integers(12, 22))
    fs_hdr = FS(s_hdr) if not bitmap else bitmap_font(2)
    fs_par = FS(s_par) if not bitmap else bitmap_font(1)
    fs_ann = FS(s_ann) if not bitmap else bitmap_font(2)
    if layout == "B":
        hb = int(rng.integers(8, 14))
    else:
        hb = sum(fmetrics(fs_hdr)) + int(rng.integers(8, 16))
    if control and spec.get("nobar"):
        hb = 0
    geom = USGeom(spec["probe"], W, H, hb, int(rng.integers(36, 52)), rng)
    frames, inside = us_frames(rng, H, W, geom, nf)
    if rgb:
        tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.9, 1.0)], np.float32)
        frames = [np.repeat(f[..., None], 3, axis=2) * tint for f in frames]
    doc = Doc(frames, 255)
    white = (235, 235, 235) if rgb else 235
    yellow = (240, 220, 60) if rgb else 215
    cyan = (110, 220, 250) if rgb else 200
    green = (80, 230, 90) if rgb else 190
    grey = (200, 200, 200) if rgb else 200
    barcol = pick(rng, [(24, 30, 52), (40, 40, 40), (10, 48, 70)]) if rgb else int(rng.integers(25, 55))
    vendor, model = pick(rng, US_VENDORS)
    probe, preset = pick(rng, US_PRESETS)
    params = list(pick(rng, US_PARAM_SETS))
    depth_cm = int(rng.integers(6, 21)) if spec["probe"] != "linear" else int(rng.integers(3, 7))
    ppc = geom.depth_px / depth_cm
    step_lab = 5 if depth_cm > 10 else (2 if depth_cm > 4 else 1)
    focus = rng.uniform(0.3, 0.7)
    mi = f"MI {rng.uniform(0.2, 1.4):.1f}"
    tis = pick(rng, ["TIS", "TIB", "TIC"]) + f" {rng.uniform(0.1, 1.2):.1f}"
    annot = pick(rng, US_ANNOT)
    tstyle = pick(rng, ["hms", "hms", "hms_cs", "ampm"]) if nf > 1 else pick(rng, ["hms", "hm", "ampm"])
    dstyle = pick(rng, ["us", "eu", "iso", "dmon", "slash_eu"])
    nstyle = pick(rng, ["caret", "comma", "space", "lastfirst_title", "title"])
    inst_txt = I.institution if rng.random() < 0.5 else I.inst_short
    frame_dt = rng.uniform(1.0, 1.6) if tstyle != "hms_cs" else rng.uniform(0.03, 0.08)
    doppler = rgb and spec.get("doppler", False)
    vscale = rng.uniform(20, 70)
    noise_sigma = spec.get("noise", 0.0)
    # ---- layout (fixed over frames) ----
    sx = min(geom.right + 14, W - 80)
    tgc_top = hb + 2 * sum(fmetrics(fs_par)) + 14
    asc_p, desc_p = fmetrics(fs_par)
    lh_p = asc_p + desc_p + 2
    asc_h, desc_h = fmetrics(fs_hdr)
    lh_h = asc_h + desc_h + 1
    if layout == "B":
        y_params = hb + 2 + 4 * lh_h + 8
    else:
        y_params = hb + 3 + 2 * lh_p + 8
    y_params_end = y_params + (len(params) + 1) * lh_p
    cby = y_params_end + 14
    cbh = 100
    if doppler and cby + cbh + 60 > H:
        raise ValueError("no room for the colour bar")
    ddep, dlat = rng.uniform(0.35, 0.55), rng.uniform(-0.3, 0.3)
    vx, vy = geom.point(ddep, dlat)
    c1 = geom.point(0.45, -0.2)
    c2 = geom.point(0.62, 0.05)

    for f in range(nf):
        img = doc.frames[f]
        # ---------------- non-text graphics ----------------
        if hb > 0:
            img[:hb] = barcol
            doc.gfx(f, lambda d: d.line([(0, hb), (W, hb)], fill=255), (90, 90, 110) if rgb else 90)
        if doppler:
            bx0, by0, bx1, by1 = int(vx - 70), int(vy - 50), int(vx + 70), int(vy + 50)
            yy, xx = np.mgrid[by0:by1, bx0:bx1].astype(np.float32)
            u = (yy - vy) - 0.25 * (xx - vx) - 3 * math.sin(f)
            tube = np.abs(u) < 9
            vel = np.cos(u / 9 * math.pi / 2) * (0.6 + 0.4 * math.cos(f * 1.3))
            vel = np.where((xx - vx) > 20, -vel, vel)
            reg = img[by0:by1, bx0:bx1]
            col = np.zeros(reg.shape, np.float32)
            col[..., 0] = np.where(vel > 0, 110 + 145 * vel, 0)
            col[..., 1] = np.where(np.abs(vel) > 0.85, 160, 30)
            col[..., 2] = np.where(vel < 0, 110 - 145 * vel, 0)
            reg[tube] = col[tube]
            doc.gfx(f, lambda d: d.rectangle([bx0, by0, bx1, by1], outline=255), grey)
            bar = np.zeros((cbh, 10, 3), np.float32)
            ramp = np.linspace(1, -1, cbh)[:, None]
            bar[..., 0] = np.where(ramp > 0, 80 + 175 * ramp, 0)
            bar[..., 1] = np.where(np.abs(ramp) > 0.85, 200, 0)
            bar[..., 2] = np.where(ramp < 0, 80 - 175 * ramp, 0)
            img[cby:cby + cbh, 6:16] = bar

        def ticks(d):
            for c in range(depth_cm + 1):
                y = geom.skin_y + c * ppc
                ln = 7 if c % step_lab == 0 else 4
                d.line([(sx, y), (sx + ln, y)], fill=255)
            fy = geom.skin_y + focus * geom.depth_px
            d.polygon([(sx - 9, fy), (sx - 3, fy - 4), (sx - 3, fy + 4)], fill=255)
        doc.gfx(f, ticks, grey)
        tx = W - 24

        def tgc(d):
            pts = []
            for k in range(12):
                y = tgc_top + k / 11 * (geom.skin_y + geom.depth_px - tgc_top)
                pts.append((tx + 7 * math.sin(k * 0.7 + 0.5) + k * 0.5, y))
            d.line(pts, fill=255, width=1)
            d.line([(tx - 9, tgc_top), (tx - 9, geom.skin_y + geom.depth_px)], fill=110)
        doc.gfx(f, tgc, (170, 170, 170) if rgb else 170)
        if spec["probe"] == "linear":
            ox, oy = geom.left + 6, geom.skin_y + 4
        else:
            ox, oy = geom.cx - (geom.r0 + 10) * math.sin(geom.half) - 6, geom.cy + (geom.r0 + 10) * math.cos(geom.half)
        doc.gfx(f, lambda d: d.ellipse([ox - 4, oy - 4, ox + 4, oy + 4], fill=255), (90, 170, 255) if rgb else 230)
        pbx, pby = 8, H - 46

        def body(d):
            d.ellipse([pbx, pby, pbx + 22, pby + 34], outline=255)
            d.line([(pbx + 4, pby + 12), (pbx + 16, pby + 8)], fill=255, width=3)
        doc.gfx(f, body, (160, 160, 160) if rgb else 160)
        if control:
            if noise_sigma:
                doc.noise(f, rng, noise_sigma)
            continue
        dyf = 2 * math.sin(f)

        def cal(d):
            for (cx_, cy_) in (c1, c2):
                d.line([(cx_ - 4, cy_ + dyf), (cx_ + 4, cy_ + dyf)], fill=255)
                d.line([(cx_, cy_ - 4 + dyf), (cx_, cy_ + 4 + dyf)], fill=255)
        doc.gfx(f, cal, yellow)

        # ---------------- text ----------------
        time_s = T(I.ftime(I.acq + f * frame_dt, tstyle))
        time_hk = ctx.hk("time") if f == 0 else None
        name_s = T(I.name(nstyle))
        date_s = T(I.fdate(I.study, dstyle))
        if layout in ("A", "C"):
            base_y = (hb - (asc_h + desc_h)) // 2 + asc_h
            if layout == "A":
                b = doc.text(f, 3, base_y, inst_txt, fs_hdr, white, ident=True, kind="institution", hk=ctx.hk("institution"))
                b = doc.text(f, b[2] + 14, base_y, name_s, fs_hdr, yellow, ident=True, kind="name", hk=ctx.hk("name"))
                doc.text(f, b[2] + 12, base_y, f"ID: {I.pid}", fs_hdr, white, ident=True, kind="id", hk=ctx.hk("pid"))
                bt = doc.text(f, W - 3, base_y, time_s, fs_hdr, white, ident=True, kind="time", hk=time_hk, align="right")
                doc.text(f, bt[0] - 10, base_y, date_s, fs_hdr, white, ident=True, kind="date", hk=ctx.hk("date"), align="right")
            else:
                doc.text(f, 3, base_y, f"{name_s} {I.pid}", fs_hdr, white, ident=True, kind="name+id", hk=ctx.hk("name") or ctx.hk("pid"))
                doc.text(f, W - 3, base_y, f"{date_s} {time_s}", fs_hdr, white, ident=True, kind="date+time", hk=ctx.hk("date") or time_hk, align="right")
            doc.lines(f, 3, hb + 3, [(T(probe), False, "tech", None), (T(preset), False, "tech", None)], fs_par, white)
        else:
            items = [(name_s, True, "name", ctx.hk("name")),
                     (f"ID {I.pid}", True, "id", ctx.hk("pid")),
                     (f"{I.sex} {I.age}Y", True, "age", ctx.hk("age")),
                     (I.inst_short, True, "institution", ctx.hk("institution"))]
            doc.lines(f, 3, hb + 2, items, fs_hdr, white, gap=1)
            bt = doc.text(f, W - 2, H - 2, time_s, fs_par, white, ident=True, kind="time", hk=time_hk, align="right", valign="bottom")
            doc.text(f, bt[0] - 8, H - 2, date_s, fs_par, white, ident=True, kind="date", hk=ctx.hk("date"), align="right", valign="bottom")
        # MI / TI right column under the bar
        doc.lines(f, W - 3, hb + 3, [(mi, False, "tech", None), (tis, False, "tech", None)], fs_par,
                  green, align="right")
        # acquisition parameter column on the left
        pitems = [(T(p), False, "tech", None) for p in params] + [(T(f"D {depth_cm}.0cm"), False, "tech", None)]
        doc.lines(f, 3, y_params, pitems, fs_par, cyan)
        # depth numbers next to the ticks
        for c in range(0, depth_cm + 1, step_lab):
            y = geom.skin_y + c * ppc
            doc.text(f, sx + 10, int(round(y)), str(c), fs_par, white, ident=False, kind="scale", valign="middle", align="inkleft")
        doc.text(f, sx + 2, int(geom.skin_y + depth_cm * ppc) + 7, T("cm"), fs_par, white, ident=False, kind="scale", align="inkleft", valign="top")
        if doppler:
            doc.text(f, 20, cby, f"+{vscale:.1f}", fs_par, white, ident=False, kind="scale", align="inkleft", valign="top")
            doc.text(f, 20, cby + cbh, f"-{vscale:.1f}", fs_par, white, ident=False, kind="scale", align="inkleft", valign="bottom")
            doc.text(f, 20, cby + cbh // 2, T("cm/s"), fs_par, white, ident=False, kind="scale", align="inkleft", valign="middle")
        # annotation over anatomy; moves with the tissue in cines
        ax, ay = geom.point(0.8, -0.42)
        mvx = int(round(2 * math.sin(f * 0.9))) if nf > 1 else 0
        mvy = int(round(3 * math.sin(2 * math.pi * f / max(nf, 2)))) if nf > 1 else 0
        if spec.get("annot_contrast"):
            doc.text(f, int(ax) + mvx, int(ay) + mvy, annot, fs_ann, ident=False, kind="annotation",
                     contrast=spec["annot_contrast"])
        else:
            doc.text(f, int(ax) + mvx, int(ay) + mvy, annot, fs_ann, yellow, ident=False, kind="annotation")
        # measurement result next to the body marker
        dist = math.hypot(c2[0] - c1[0], c2[1] - c1[1]) / ppc
        doc.text(f, 36, H - 4, T(f"D1 {dist:.2f} cm"), fs_par, yellow, ident=False, kind="measurement", valign="bottom")
        # frame counter (changes per frame)
        if nf > 1:
            yb = H - 4 if layout != "B" else H - 4 - lh_p - 4
            doc.text(f, W - 3, yb, f"{f + 1}/{nf}", fs_par, white, ident=False, kind="frame_counter", align="right", valign="bottom")
        # identifiers that are never in the header
        if layout == "A":
            doc.text(f, geom.cx, H - 4, f"Sono: {I.op_first[0]}{I.op_last[0]}", fs_par, white, ident=True, kind="operator", align="center", valign="bottom")
        elif layout == "B":
            doc.text(f, int(W * 0.45), H - 2, I.exam_no, fs_par, white, ident=True, kind="id", align="center", valign="bottom")
        else:
            doc.text(f, geom.cx, H - 3, f"OP {I.op_first[0]}{I.op_last[0]}", fs_par, white, ident=True, kind="operator", align="center", valign="bottom")
        if spec.get("phone"):
            yb = H - 4 - lh_p - 3 if layout != "B" else H - 4 - 2 * lh_p - 6
            doc.text(f, 36, yb, T(f"Tel {I.phone}"), fs_par, ident=True, kind="phone",
                     align="inkleft", valign="bottom", contrast=0.3)
        if noise_sigma:
            doc.noise(f, rng, noise_sigma)
    ds = build_header(ctx, "US", "USMF" if nf > 1 else "US", vendor, model,
                      burned_attr(ctx, bool(doc.boxes)), f"US {preset}")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0011" if doppler else "0001"]
    if nf > 1:
        ds.FrameTime = f"{frame_dt * 1000:.1f}"
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
        ds.CineRate = max(1, int(round(1 / frame_dt)))
    return write_case(outdir, fname, ctx, ds, doc, np.uint8, "RGB" if rgb else "MONOCHROME2", 8,
                      spec["syntax"], "us", spec["variant"], rgb_ybr=spec.get("ybr", False),
                      j2k_cr=spec.get("cr", 12), jpeg_quality=spec.get("q", 90))


# --------------------------------------------------------------------------
# Anatomy-like greyscale images (CT slice, radiograph)
# --------------------------------------------------------------------------

def ellipse_mask(H, W, cx, cy, a, b, ang=0.0):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    ca, sa = math.cos(ang), math.sin(ang)
    u = (xx - cx) * ca + (yy - cy) * sa
    v = -(xx - cx) * sa + (yy - cy) * ca
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def ct_slice(rng, H, W):
    """CT-like axial slice in HU (float)."""
    img = np.full((H, W), -1000.0, np.float32)
    cx, cy = W / 2 + rng.uniform(-4, 4), H / 2 + rng.uniform(-4, 4)
    a, b = W * rng.uniform(0.40, 0.45), H * rng.uniform(0.30, 0.36)
    body = ellipse_mask(H, W, cx, cy, a, b)
    img[body] = -90  # fat
    inner = ellipse_mask(H, W, cx, cy, a * 0.9, b * 0.86)
    img[inner] = 40
    tex = smooth_field(rng, H, W, 10)
    img[inner] += 12 * tex[inner]
    for side in (-1, 1):  # kidneys / lungs-like pair
        m = ellipse_mask(H, W, cx + side * a * 0.45, cy - b * 0.05, a * 0.2, b * 0.3, side * 0.3)
        img[m] = pick(rng, [-800, 30, 150])
    liver = ellipse_mask(H, W, cx - a * 0.25, cy - b * 0.25, a * 0.35, b * 0.35, 0.4)
    img[liver & inner] = 60 + 8 * tex[liver & inner]
    spine = ellipse_mask(H, W, cx, cy + b * 0.55, a * 0.1, b * 0.14)
    img[spine] = 700
    canal = ellipse_mask(H, W, cx, cy + b * 0.6, a * 0.035, b * 0.05)
    img[canal] = 20
    aorta = ellipse_mask(H, W, cx + a * 0.08, cy + b * 0.32, a * 0.05, b * 0.07)
    img[aorta] = 180
    img = gblur(img, 1.0)
    img += rng.standard_normal((H, W)).astype(np.float32) * 8
    return img


def radiograph(rng, H, W, kind):
    """Radiograph-like attenuation image, 0..1 (1 = most attenuating / brightest
    in MONOCHROME2 presentation)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.full((H, W), 0.04, np.float32)
    if kind == "chest":
        cx = W / 2 + rng.uniform(-10, 10)
        torso = ellipse_mask(H, W, cx, H * 0.55, W * 0.46, H * 0.62)
        img[torso] = 0.55
        for side in (-1, 1):
            lung = ellipse_mask(H, W, cx + side * W * 0.2, H * 0.46, W * 0.15, H * 0.3, side * -0.08)
            img[lung] = 0.25
            for k in range(8):  # ribs
                yc = H * 0.22 + k * H * 0.065
                curve = yc + 0.0009 * (xx - cx) ** 2 * 0.5 + 6 * side * 0
                rib = (np.abs(yy - curve) < H * 0.008) & lung
                img[rib] += 0.12
        heart = ellipse_mask(H, W, cx + W * 0.05, H * 0.6, W * 0.14, H * 0.14, 0.3)
        img[heart] = 0.62
        spine = np.abs(xx - cx) < W * 0.035
        img[spine & torso] += 0.18
        dia = (yy > H * 0.74 + 0.0006 * (xx - cx) ** 2) & torso
        img[dia] = 0.68
        for side in (-1, 1):
            clav = (np.abs(yy - (H * 0.2 + side * (xx - cx) * 0.08)) < H * 0.01) & (np.abs(xx - cx - side * W * 0.17) < W * 0.15)
            img[clav] += 0.2
    elif kind == "hand":
        palm = ellipse_mask(H, W, W * 0.5, H * 0.72, W * 0.26, H * 0.2)
        img[palm] = 0.35
        for k in range(5):
            ang = -0.5 + k * 0.25
            bx, by = W * 0.5 + math.sin(ang) * W * 0.22, H * 0.6
            for j in range(3):
                px = bx + math.sin(ang) * (j + 1) * H * 0.11
                py = by - math.cos(ang) * (j + 1) * H * 0.11
                img[ellipse_mask(H, W, px, py, W * 0.04, H * 0.06, ang)] = 0.35
                img[ellipse_mask(H, W, px, py, W * 0.018, H * 0.05, ang)] = 0.75
        for j in range(4):
            img[ellipse_mask(H, W, W * (0.4 + j * 0.06), H * 0.8, W * 0.025, H * 0.09)] = 0.8
    else:  # knee / long bones
        leg = np.abs(xx - W / 2 - 0.05 * (yy - H / 2)) < W * 0.22
        img[leg] = 0.4
        fem = (np.abs(xx - W / 2 - 0.05 * (yy - H / 2)) < W * 0.07) & (yy < H * 0.48)
        img[fem] = 0.8
        tib = (np.abs(xx - W / 2 - 0.05 * (yy - H / 2)) < W * 0.065) & (yy > H * 0.54)
        img[tib] = 0.78
        img[ellipse_mask(H, W, W / 2, H * 0.48, W * 0.12, H * 0.04)] = 0.85
        img[ellipse_mask(H, W, W / 2 + 2, H * 0.55, W * 0.11, H * 0.035)] = 0.83
        img[ellipse_mask(H, W, W * 0.5 + W * 0.05, H * 0.42, W * 0.04, H * 0.035)] = 0.88
    body = img > 0.1
    img = gblur(img, 2.5)
    img += np.where(body, 0.035 * smooth_field(rng, H, W, 18) + 0.015 * smooth_field(rng, H, W, 4), 0.004 * smooth_field(rng, H, W, 40))
    # collimation: unexposed border is bright
    m = int(min(H, W) * rng.uniform(0.02, 0.06))
    coll = np.ones((H, W), bool)
    coll[m:H - m, m:W - m] = False
    img[coll] = 0.95
    return np.clip(img, 0, 1)


# --------------------------------------------------------------------------
# Secondary capture / screenshots
# --------------------------------------------------------------------------

SC_BUTTONS = ["File", "Edit", "View", "Tools", "Export", "Print", "Layout", "Help"]
SC_VENDORS = [("Corvid Viewer", "4.2"), ("PixelBridge PACS", "11.0"), ("OmniRead", "2.7")]
REPORT_LINES = ["Liver is normal in size and echotexture.", "No focal lesion identified.",
                "Gallbladder: no stones, wall not thickened.", "CBD measures 4 mm.",
                "Kidneys: normal size, no hydronephrosis.", "Spleen 10.2 cm, homogeneous.",
                "Impression: unremarkable abdominal study.", "Recommend clinical correlation."]


class Theme:
    def __init__(self, rng, dark):
        if dark:
            self.bg, self.panel, self.accent = (28, 30, 34), (52, 56, 62), pick(rng, [(0, 92, 160), (120, 40, 40), (30, 110, 70)])
            self.text, self.dim, self.hl_bg, self.hl_text = (225, 225, 225), (160, 165, 170), (215, 220, 228), (20, 24, 28)
            self.btn = (70, 74, 82)
        else:
            self.bg, self.panel, self.accent = (238, 238, 236), (214, 217, 222), pick(rng, [(0, 51, 102), (70, 70, 90), (0, 100, 110)])
            self.text, self.dim, self.hl_bg, self.hl_text = (15, 15, 15), (80, 80, 80), (40, 70, 130), (250, 250, 250)
            self.btn = (196, 200, 206)


def to_grey(c):
    return int(round(float(luma(c))))


def gen_sc(ctx, outdir, fname, spec):
    kind = spec["kind"]
    if kind == "viewer":
        return _sc_viewer(ctx, outdir, fname, spec)
    if kind == "report":
        return _sc_report(ctx, outdir, fname, spec)
    if kind == "console":
        return _sc_console(ctx, outdir, fname, spec)
    if kind == "ct16":
        return _sc_ct16(ctx, outdir, fname, spec)
    raise ValueError(kind)


def _sc_finish(ctx, outdir, fname, spec, doc, mode, vendor, desc):
    nf = doc.n
    if mode == "rgb":
        sop = "SCMF_RGB" if spec.get("mf") else "SC"
        pi, dtype, bits = "RGB", np.uint8, 8
    elif mode == "grey8":
        sop = "SCMF_BYTE" if spec.get("mf") else "SC"
        pi, dtype, bits = "MONOCHROME2", np.uint8, 8
    else:
        sop = "SCMF_WORD" if spec.get("mf") else "SC"
        pi, dtype, bits = "MONOCHROME2", np.uint16, spec["bits"]
    ds = build_header(ctx, "OT", sop, vendor[0], vendor[1], burned_attr(ctx, bool(doc.boxes)), desc)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SecondaryCaptureDeviceManufacturer = vendor[0]
    ds.SecondaryCaptureDeviceManufacturerModelName = vendor[0]
    ds.SecondaryCaptureDeviceSoftwareVersions = vendor[1]
    if mode == "grey16":
        ds.RescaleIntercept = "-1024" if spec.get("ct") else "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU" if spec.get("ct") else "US"
        ds.WindowCenter = "40" if spec.get("ct") else str((1 << bits) // 2)
        ds.WindowWidth = "400" if spec.get("ct") else str(1 << bits)
    if spec.get("mf") and nf > 1:
        ds.FrameTime = f"{spec.get('frame_ms', 1000.0):.1f}"
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    return write_case(outdir, fname, ctx, ds, doc, dtype, pi, bits, spec["syntax"], "sc",
                      spec["variant"], rgb_ybr=spec.get("ybr", False), j2k_cr=spec.get("cr", 12),
                      jpeg_quality=spec.get("q", 90), multiframe_attr=bool(spec.get("mf")))


def _ui_doc(base_rgb, nf, mode, control=False):
    if mode == "rgb":
        frames = [base_rgb.astype(np.float32) for _ in range(nf)]
        return Doc(frames, 255, notext=control)
    g = luma(base_rgb.astype(np.float64)).astype(np.float32)
    return Doc([g.copy() for _ in range(nf)], 255, notext=control)


def _sc_viewer(ctx, outdir, fname, spec):
    rng, I = ctx.rng, ctx.id
    W, H = spec["size"]
    nf = spec.get("frames", 1)
    mode = spec["mode"]
    th = Theme(rng, spec.get("dark", True))
    fam = spec.get("font") or pick(rng, ["DejaVuSans", "LiberationSans", "FreeSans", "DejaVuSansCondensed", "URWGothic", "LiberationSansNarrow"])
    rmode = spec.get("render", "aa")
    sz = int(rng.integers(11, 14))
    fs_ui = fspec(fam, sz, rmode)
    fs_small = fspec(fam, max(8, sz - 2), rmode)
    ov_render = spec.get("overlay_render", rmode)
    ov_size = int(rng.integers(9, 12)) * 2 if ov_render == "nearest2x" else int(rng.integers(10, 16))
    fs_ov = fspec(spec.get("overlay_font", fam), ov_size, ov_render)
    asc, desc = fmetrics(fs_ui)
    tb = asc + desc + 14  # toolbar height
    sb = asc + desc + 8   # status bar height
    lp = int(W * rng.uniform(0.2, 0.25))  # left panel width
    vendor = pick(rng, SC_VENDORS)
    # ---------------- base UI (no text) ----------------
    base = Image.new("RGB", (W, H), th.bg)
    d = ImageDraw.Draw(base)
    d.rectangle([0, 0, W, tb - 1], fill=th.panel)
    d.rectangle([0, H - sb, W, H], fill=th.panel)
    d.rectangle([0, tb, lp, H - sb - 1], fill=th.panel)
    d.line([(lp, tb), (lp, H - sb)], fill=th.dim)
    # buttons
    bx = 6
    buttons = []
    for lab in SC_BUTTONS[: int(rng.integers(5, 9))]:
        _, _, w, _ = measure(lab, fs_ui)
        d.rectangle([bx, 4, bx + w + 14, tb - 5], fill=th.btn, outline=th.dim)
        buttons.append((lab, bx + 7, bx + w + 14))
        bx += w + 20
    # worklist rows
    rh = asc + desc + 10
    wl_top = tb + rh + 4
    d.rectangle([0, tb, lp - 1, tb + rh], fill=th.accent)
    nrows = min(9, (H - sb - wl_top) // rh - 1)
    hl = int(rng.integers(0, nrows))
    for r in range(nrows):
        y = wl_top + r * rh
        if r == hl:
            d.rectangle([2, y, lp - 3, y + rh - 2], fill=th.hl_bg)
        elif r % 2:
            d.rectangle([2, y, lp - 3, y + rh - 2], fill=tuple(max(0, c - 10) for c in th.panel))
    # viewport with a CT-like image
    vx0, vy0, vx1, vy1 = lp + 1, tb, W, H - sb
    vw, vh = vx1 - vx0, vy1 - vy0
    d.rectangle([vx0, vy0, vx1, vy1], fill=(0, 0, 0))
    base_np = np.asarray(base, dtype=np.float32).copy()
    ims = min(vw, vh) - 20
    ct = ct_slice(rng, ims, ims)
    g = np.clip((ct - (40 - 200)) / 400.0, 0, 1) * 255
    ox, oy = vx0 + (vw - ims) // 2, vy0 + (vh - ims) // 2
    base_np[oy:oy + ims, ox:ox + ims] = g[..., None]
    doc = _ui_doc(base_np, nf, mode, ctx.control)
    C = (lambda c: c) if mode == "rgb" else to_grey
    # ---------------- text ----------------
    others = []
    for r in range(nrows):
        o = Identity(np.random.default_rng([SEED, 99, ctx.idx, r]))
        others.append(o)
    t0 = I.acq + int(rng.integers(600, 5000))
    clock_style = pick(rng, ["hms", "ampm"])
    tip_text = f"HU: {int(rng.integers(-80, 120))}"
    zoom_s = f"Zoom: {rng.uniform(0.8, 2.0):.2f}"
    for f in range(nf):
        for lab, x, _ in buttons:
            doc.text(f, x, tb // 2, lab, fs_ui, C(th.text), ident=False, kind="ui", valign="middle", align="inkleft")
        title = f"{vendor[0]} - {I.name('caret')}"
        doc.text(f, W - 6, tb // 2, title, fs_ui, C(th.text), ident=True, kind="name", hk=ctx.hk("name"), align="right", valign="middle")
        doc.text(f, 6, tb + rh // 2, "Worklist", fs_ui, C((255, 255, 255)), ident=False, kind="ui", valign="middle", align="inkleft")
        for r in range(nrows):
            y = wl_top + r * rh + rh // 2 - 1
            col = th.hl_text if r == hl else th.text
            who = I if r == hl else others[r]
            nm = who.name("initial") if r != hl else I.name("comma")
            dt = Identity.fdate(who.study, "iso")
            room = lp - 8 - measure(dt, fs_small)[2] - 14 - 6
            if measure(nm, fs_small)[2] > room:
                nm = who.name("initial")
            while measure(nm, fs_small)[2] > room:
                nm = nm[:-4] + "..."
            b = doc.text(f, 6, y, nm, fs_small, C(col), ident=True, kind="name", hk=ctx.hk("name") if r == hl else None, valign="middle", align="inkleft")
            dt = Identity.fdate(who.study, "iso")
            doc.text(f, lp - 8, y, dt, fs_small, C(col), ident=True, kind="date", hk=ctx.hk("date") if r == hl else None, valign="middle", align="right")
        # overlay corners in the viewport
        ovc = C(spec.get("overlay_color", (240, 240, 240)))
        items_tl = [(I.name("caret"), True, "name", ctx.hk("name")), (f"ID: {I.pid}", True, "id", ctx.hk("pid")),
                    (f"DOB: {Identity.fdate(I.dob, 'dmon')}", True, "dob", ctx.hk("dob"))]
        doc.lines(f, vx0 + 4, vy0 + 3, items_tl, fs_ov, ovc)
        items_tr = [(I.institution, True, "institution", ctx.hk("institution")),
                    (Identity.fdate(I.study, "dmon"), True, "date", ctx.hk("date")),
                    (Identity.ftime(I.acq, "hms"), True, "time", ctx.hk("time"))]
        doc.lines(f, W - 4, vy0 + 3, items_tr, fs_ov, ovc, align="right")
        asc_o, desc_o = fmetrics(fs_ov)
        lho = asc_o + desc_o + 2
        items_bl = [("W: 400 L: 40", False, "tech", None), (zoom_s, False, "tech", None)]
        doc.lines(f, vx0 + 4, vy1 - 3 - 2 * lho, items_bl, fs_ov, ovc)
        items_br = [(f"Se: {1 + ctx.idx % 6}  Im: {12 + ctx.idx}/{80 + ctx.idx}", False, "tech", None), ("5.0 mm", False, "tech", None)]
        doc.lines(f, W - 4, vy1 - 3 - 2 * lho, items_br, fs_ov, ovc, align="right")
        doc.text(f, ox + 4, oy + ims // 2, "R", fs_ov, ovc, ident=False, kind="orientation", valign="middle", align="inkleft")
        doc.text(f, ox + ims - 4, oy + ims // 2, "L", fs_ov, ovc, ident=False, kind="orientation", valign="middle", align="right")
        # status bar
        ys = H - sb // 2
        doc.text(f, 6, ys, "Ready", fs_small, C(th.text), ident=False, kind="ui", valign="middle", align="inkleft")
        b = doc.text(f, int(W * 0.22), ys, f"Support: {I.phone}", fs_small, C(th.text), ident=True, kind="phone", valign="middle", align="inkleft")
        doc.text(f, b[2] + 24, ys, f"User: {I.op_first.title()} {I.op_last.title()}", fs_small, C(th.text), ident=True, kind="operator", hk=ctx.hk("operator"), valign="middle", align="inkleft")
        clock = Identity.ftime(t0 + f * spec.get("clock_step", 1), clock_style)
        doc.text(f, W - 6, ys, clock, fs_small, C(th.text), ident=True, kind="time", valign="middle", align="right")
        if nf > 1:  # a moving tooltip over the image
            tx = ox + ims // 3 + 6 * f
            ty = oy + ims // 2 + 3 * f
            _, _, tw, th_ = measure(tip_text, fs_small)
            doc.gfx(f, lambda dd: dd.rectangle([tx - 3, ty - 3, tx + tw + 3, ty + th_ + 3], fill=255), C((255, 255, 225)), text_related=True)
            doc.text(f, tx, ty, tip_text, fs_small, C((0, 0, 0)), ident=False, kind="ui", valign="top", align="inkleft")
        if spec.get("noise"):
            doc.noise(f, rng, spec["noise"])
    return _sc_finish(ctx, outdir, fname, spec, doc, mode, vendor, "Screen capture")


def _sc_report(ctx, outdir, fname, spec):
    rng, I = ctx.rng, ctx.id
    W, H = spec["size"]
    mode = spec["mode"]
    th = Theme(rng, False)
    fam = spec.get("font") or pick(rng, ["LiberationSerif", "DejaVuSerif", "FreeSerif", "LiberationSans", "DejaVuSans"])
    rmode = spec.get("render", "aa")
    fs_t = fspec(spec.get("title_font", "LiberationSans-Bold"), int(rng.integers(18, 25)), rmode)
    fs_l = fspec(fam, int(rng.integers(11, 15)), rmode)
    fs_v = fspec(spec.get("value_font", "DejaVuSansMono"), int(rng.integers(11, 15)), rmode)
    fs_s = fspec(fam, int(rng.integers(8, 11)), rmode)
    vendor = pick(rng, SC_VENDORS)
    at, dt_ = fmetrics(fs_t)
    hh = at + dt_ + 16
    al, dl = fmetrics(fs_l)
    av, dv = fmetrics(fs_v)
    rowh = max(al + dl, av + dv) + 10
    fields = [("Patient Name:", I.name("comma"), "name", "name"),
              ("Patient ID:", I.pid, "id", "pid"),
              ("Date of Birth:", Identity.fdate(I.dob, "us"), "dob", "dob"),
              ("Age / Sex:", f"{I.age} / {I.sex}", "age", "age"),
              ("Exam Date:", Identity.fdate(I.study, "us") + "  " + Identity.ftime(I.acq, "hm"), "date+time", "date"),
              ("Accession:", I.accession, "id", "accession"),
              ("Referring:", f"Dr. {I.ref_first.title()} {I.ref_last.title()}", "name", "referring")]
    lw = max(measure(f[0], fs_l)[2] for f in fields) + 22
    base = Image.new("RGB", (W, H), (255, 255, 255) if not spec.get("tinted") else (246, 244, 236))
    d = ImageDraw.Draw(base)
    d.rectangle([0, 0, W, hh], fill=th.accent)
    fy0 = hh + 14
    for k in range(len(fields)):
        y = fy0 + k * rowh
        # inverted label cell + boxed value cell
        d.rectangle([10, y, 10 + lw, y + rowh - 4], fill=(60, 60, 60) if spec.get("inverted_labels") else (230, 232, 236))
        d.rectangle([14 + lw, y, W - 12, y + rowh - 4], outline=(120, 120, 120), fill=(255, 255, 255))
    ty0 = fy0 + len(fields) * rowh + 12
    # measurement table grid
    n_meas = 4
    d.rectangle([10, ty0, W - 12, ty0 + (n_meas + 1) * rowh], outline=(90, 90, 90))
    for k in range(1, n_meas + 1):
        d.line([(10, ty0 + k * rowh), (W - 12, ty0 + k * rowh)], fill=(170, 170, 170))
    d.line([(W // 2, ty0), (W // 2, ty0 + (n_meas + 1) * rowh)], fill=(170, 170, 170))
    base_np = np.asarray(base, dtype=np.float32).copy()
    doc = _ui_doc(base_np, 1, mode, ctx.control)
    C = (lambda c: c) if mode == "rgb" else to_grey
    f = 0
    doc.text(f, 12, hh // 2, "ULTRASOUND REPORT", fs_t, C((255, 255, 255)), ident=False, kind="title", valign="middle", align="inkleft")
    doc.text(f, W - 12, hh // 2, I.institution.title(), fs_l, C((255, 255, 255)), ident=True, kind="institution", hk=ctx.hk("institution"), valign="middle", align="right")
    for k, (lab, val, knd, key) in enumerate(fields):
        y = fy0 + k * rowh + (rowh - 4) // 2
        doc.text(f, 16, y, lab, fs_l, C((255, 255, 255)) if spec.get("inverted_labels") else C((20, 20, 20)), ident=False, kind="label", valign="middle", align="inkleft")
        doc.text(f, 22 + lw, y, val, fs_v, C((0, 0, 0)), ident=True, kind=knd, hk=ctx.hk(key), valign="middle", align="inkleft")
    meas = [("Measurement", "Value"), ("Liver length", f"{rng.uniform(12, 17):.1f} cm"),
            ("Spleen length", f"{rng.uniform(8, 12):.1f} cm"), ("CBD", f"{rng.uniform(2, 6):.1f} mm"),
            ("Rt kidney", f"{rng.uniform(9, 12):.1f} cm")]
    for k, (a, b) in enumerate(meas):
        y = ty0 + k * rowh + rowh // 2
        doc.text(f, 16, y, a, fs_l, C((20, 20, 20)), ident=False, kind="table", valign="middle", align="inkleft")
        doc.text(f, W // 2 + 8, y, b, fs_l, C((20, 20, 20)), ident=False, kind="table", valign="middle", align="inkleft")
    y = ty0 + (n_meas + 1) * rowh + 14
    for ln in REPORT_LINES[: int(rng.integers(3, 7))]:
        b = doc.text(f, 14, y + al, ln, fs_l, C((30, 30, 30)), ident=False, kind="body")
        y = b[3] + 6
    y += 6
    sig = f"Electronically signed by Dr. {I.op_first.title()} {I.op_last.title()}"
    b = doc.text(f, 14, y + al, sig, fs_l, C((30, 30, 30)), ident=True, kind="name", hk=ctx.hk("operator"))
    b = doc.text(f, 14, b[3] + 4 + al, f"on {Identity.fdate(I.study, 'mond')} at {Identity.ftime(I.acq + 3000, 'hm')}", fs_l, C((30, 30, 30)), ident=True, kind="date+time", hk=ctx.hk("date"))
    # footer at the very bottom edge; low contrast phone line
    doc.text(f, 4, H - 2, f"{I.inst_short}  Tel {I.phone}", fs_s, ident=True, kind="phone", valign="bottom", align="inkleft", contrast=spec.get("footer_contrast", 0.45))
    doc.text(f, W - 3, H - 2, "Page 1 of 1", fs_s, C((90, 90, 90)), ident=False, kind="ui", valign="bottom", align="right")
    if spec.get("noise"):
        doc.noise(f, rng, spec["noise"])
    return _sc_finish(ctx, outdir, fname, spec, doc, mode, vendor, "Report capture")


def _sc_console(ctx, outdir, fname, spec):
    rng, I = ctx.rng, ctx.id
    W, H = spec["size"]
    nf = spec.get("frames", 1)
    mode = spec["mode"]
    fg = pick(rng, [(90, 255, 120), (255, 190, 60), (220, 220, 220)])
    bgc = (8, 12, 10)
    fs = spec.get("fs") or bitmap_font(int(rng.integers(2, 4)))
    fs_small = spec.get("fs_small") or bitmap_font(1)
    base = np.zeros((H, W, 3), np.float32) + np.array(bgc, np.float32)
    # inverted title bar
    asc, desc = fmetrics(fs)
    lh = asc + desc + 4
    base[: lh + 4] = np.array(fg, np.float32)
    # scan-line texture
    base[::2] *= 0.92
    doc = _ui_doc(base, nf, mode, ctx.control)
    C = (lambda c: c) if mode == "rgb" else to_grey
    U = fold if fs.render == "bitmap" else (lambda s: s)
    lines_ = [
        (U(f"PATIENT: {I.name('caret')}"), True, "name", ctx.hk("name")),
        (U(f"MRN: {I.pid}   SEX: {I.sex}   AGE: {I.age}"), True, "id+age", ctx.hk("pid")),
        (U(f"DOB: {Identity.fdate(I.dob, 'dmon')}"), True, "dob", ctx.hk("dob")),
        (U(f"ACC: {I.accession}"), True, "id", ctx.hk("accession")),
        (U("STUDY: CT ABDOMEN W/O"), False, "tech", None),
        (U(f"REF: {I.ref_last}, {I.ref_first}"), True, "name", ctx.hk("referring")),
    ]
    t0 = I.acq + int(rng.integers(60, 900))
    for f in range(nf):
        doc.text(f, 4, 2, U("RIS TERMINAL 3 - ORDER ENTRY"), fs, C(bgc), ident=False, kind="ui", valign="top", align="inkleft")
        clock = U(Identity.ftime(t0 + f * 1, "hms"))
        doc.text(f, W - 4, 2, clock, fs, C(bgc), ident=True, kind="time", valign="top", align="right")
        y = lh + 14
        for s, ident, knd, hk in lines_:
            doc.text(f, 8, y, s, fs, C(fg), ident=ident, kind=knd, hk=hk, valign="top", align="inkleft")
            y += lh
        y += lh // 2
        doc.text(f, 8, y, U(f"{I.institution}"), fs_small, C(fg), ident=True, kind="institution", hk=ctx.hk("institution"), valign="top", align="inkleft")
        y += sum(fmetrics(fs_small)) + 4
        doc.text(f, 8, y, U(f"CALL {I.phone} FOR SCHEDULING"), fs_small, C(fg), ident=True, kind="phone", valign="top", align="inkleft")
        cur = "> _" if f % 2 == 0 else ">"
        doc.text(f, 8, H - lh - 20, U(cur), fs, C(fg), ident=False, kind="ui", valign="top", align="inkleft")
        doc.text(f, 4, H - 3, U("F1=HELP F2=SAVE F3=PRINT F10=EXIT"), fs_small, C(fg), ident=False, kind="ui", valign="bottom", align="inkleft")
        if spec.get("noise"):
            doc.noise(f, rng, spec["noise"])
    return _sc_finish(ctx, outdir, fname, spec, doc, mode, ("TermCap", "1.3"), "Terminal capture")


def _sc_ct16(ctx, outdir, fname, spec):
    rng, I = ctx.rng, ctx.id
    W, H = spec["size"]
    bits = spec["bits"]
    maxv = (1 << bits) - 1
    ct = ct_slice(rng, H, W)
    if bits == 12:
        img = np.clip(ct + 1024, 0, maxv)
        spec = dict(spec, ct=True)
    else:
        img = np.clip((ct + 1024) / 4095.0, 0, 1) * maxv
    doc = Doc([img], maxv, notext=ctx.control)
    fam = spec.get("font") or pick(rng, ["DejaVuSansMono", "LiberationMono", "NotoSansMono", "FreeMono", "DejaVuSans"])
    fs = fspec(fam, int(rng.integers(10, 17)), spec.get("render", "aa"))
    f = 0
    val = maxv if spec.get("overlay_max", True) else int(maxv * 0.6)
    asc, desc = fmetrics(fs)
    lh = asc + desc + 2
    # bottom inverted panel: bright strip with dark text
    pan_h = lh + 8
    doc.frames[0][H - pan_h:] = maxv * 0.85
    tl = [(I.name("comma"), True, "name", ctx.hk("name")), (I.pid, True, "id", ctx.hk("pid")),
          (f"{I.age}Y {I.sex}", True, "age", ctx.hk("age"))]
    doc.lines(f, 2, 2, tl, fs, val)
    tr = [(I.inst_short, True, "institution", ctx.hk("institution")), (Identity.fdate(I.study, "eu"), True, "date", ctx.hk("date")),
          (Identity.ftime(I.acq, "hms"), True, "time", ctx.hk("time"))]
    doc.lines(f, W - 2, 2, tr, fs, val, align="right")
    doc.text(f, 2, H - pan_h - 4, f"C {40} W {400}", fs, val, ident=False, kind="tech", valign="bottom", align="inkleft")
    doc.text(f, W - 2, H - pan_h - 4, f"{rng.uniform(0.6, 5):.1f} mm", fs, val, ident=False, kind="tech", valign="bottom", align="right")
    doc.text(f, 4, H - pan_h // 2, f"Acc {I.accession}", fs, int(maxv * 0.1), ident=True, kind="id", hk=ctx.hk("accession"), valign="middle", align="inkleft")
    doc.text(f, W - 4, H - pan_h // 2, "Page 1", fs, int(maxv * 0.1), ident=False, kind="ui", valign="middle", align="right")
    if spec.get("low_contrast"):
        doc.text(f, W // 2, H // 2 + int(H * 0.1), I.exam_no, fspec(fam, 14, "aa"), ident=True, kind="id", align="center", valign="middle", contrast=spec["low_contrast"])
    if spec.get("noise"):
        doc.noise(f, rng, spec["noise"] * maxv / 255)
    return _sc_finish(ctx, outdir, fname, spec, doc, "grey16", ("Corvid Viewer", "4.2"), "CT capture")


# --------------------------------------------------------------------------
# Radiography (CR / DX), 16-bit
# --------------------------------------------------------------------------

XR_VENDORS = [("Kestrel Radiography", "KR-500"), ("Boreal X-Ray Systems", "DR Flex"),
              ("Tamsin Diagnostics", "CR-24")]


def gen_xr(ctx, outdir, fname, spec):
    rng, I = ctx.rng, ctx.id
    W, H = spec["size"]
    bits, mono, kind = spec["bits"], spec["mono"], spec["anatomy"]
    maxv = (1 << bits) - 1
    att = radiograph(rng, H, W, kind)
    if not spec.get("collimate", False):
        # no unexposed border: re-make the border as air
        m = int(min(H, W) * 0.07)
        border = np.ones((H, W), bool)
        border[m:H - m, m:W - m] = False
        att[border] = np.minimum(att[border], 0.06 + 0.02 * rng.random())
        att = gblur(att, 1.5)
        m = 0
    else:
        m = int(np.argmax(att[H // 2] < 0.9))  # width of the collimated border
    pres = (0.04 + 0.92 * att) * maxv  # display value, bright = attenuating
    pres += rng.standard_normal((H, W)).astype(np.float32) * (0.008 * maxv)
    stored = pres if mono == 2 else maxv - pres
    doc = Doc([np.clip(stored, 0, maxv)], maxv, notext=ctx.control)
    fam = spec.get("font") or pick(rng, ["LiberationSans", "DejaVuSans", "FreeSans", "URWGothic",
                                          "DejaVuSans-Bold", "LiberationSans-Bold", "NimbusSansNarrow",
                                          "LiberationMono", "DejaVuSansMono"])
    rmode = spec.get("render", "aa")
    size = spec.get("font_size") or int(rng.integers(14, 25))
    fs = fspec(fam, size, rmode)
    fs_small = fspec(fam, max(10, size - 4), rmode)
    white = maxv if mono == 2 else 0  # display-white value
    cval = spec.get("contrast")
    kw = dict(contrast=cval) if cval else dict(color=white)
    e = spec.get("edge", 2) + m
    f = 0
    nstyle = pick(rng, ["caret", "comma", "space", "title"])
    tl = [(I.name(nstyle), True, "name", ctx.hk("name")),
          (f"ID: {I.pid}" if rng.random() < 0.5 else f"MRN {I.pid}", True, "id", ctx.hk("pid")),
          (f"DOB {Identity.fdate(I.dob, 'eu')}  ({I.age}Y)", True, "dob+age", ctx.hk("dob") or ctx.hk("age"))]
    dstyle = pick(rng, ["us", "eu", "iso", "dmon"])
    tr = [(I.institution if rng.random() < 0.5 else I.inst_short, True, "institution", ctx.hk("institution")),
          (Identity.fdate(I.study, dstyle), True, "date", ctx.hk("date")),
          (Identity.ftime(I.acq, pick(rng, ["hms", "hm"])), True, "time", ctx.hk("time"))]
    view = {"chest": pick(rng, ["PA ERECT", "AP SUPINE", "PA"]), "hand": pick(rng, ["PA", "OBLIQUE"]),
            "knee": pick(rng, ["AP", "LAT", "AP STANDING"])}[kind]
    bl = [(f"kVp {int(rng.integers(50, 125))}  mAs {rng.uniform(0.8, 12):.1f}", False, "tech", None),
          (f"EI {int(rng.integers(200, 2000))}  DI {rng.uniform(-1.5, 1.5):+.1f}", False, "tech", None),
          (f"SID {pick(rng, [100, 110, 150, 180])} cm", False, "tech", None)]
    br = [(view, False, "tech", None),
          (f"Tech: {I.op_first[0]}{I.op_last[0]}", True, "operator", None),
          (I.accession, True, "id", ctx.hk("accession"))]
    asc, desc = fmetrics(fs)
    lh = asc + desc + 2
    doc.lines(f, e, e, tl, fs, **kw)
    doc.lines(f, W - e, e, tr, fs, align="right", **kw)
    doc.lines(f, e, H - e - 3 * lh + 2, bl, fs_small if spec.get("small_bottom") else fs, **kw)
    doc.lines(f, W - e, H - e - 3 * lh + 2, br, fs, align="right", **kw)
    # lead side marker inside the field: bright letter in a square
    side = pick(rng, ["R", "L"])
    mk_fs = fspec(pick(rng, ["DejaVuSans-Bold", "LiberationSans-Bold", "FreeSansBold"]), int(rng.integers(18, 25)), "aa")
    mx = int(W * rng.uniform(0.12, 0.22)) if side == "R" else int(W * rng.uniform(0.78, 0.88))
    my = int(H * rng.uniform(0.28, 0.4))
    marker_val = int(maxv * 0.97) if mono == 2 else int(maxv * 0.03)
    _, _, mw, mh = measure(side, mk_fs)
    doc.gfx(f, lambda d: d.rectangle([mx - mw // 2 - 5, my - mh // 2 - 5, mx + mw - mw // 2 + 4, my + mh - mh // 2 + 4], outline=255, width=2), marker_val, text_related=True)
    doc.text(f, mx, my, side, mk_fs, marker_val, ident=False, kind="orientation", align="center", valign="middle")
    # optional ruler with numbers
    if spec.get("ruler"):
        rx, ry = int(W * 0.5), int(H * 0.9) - e
        ppcm = W / 40.0

        def ruler(d):
            d.line([(rx, ry), (rx + 10 * ppcm, ry)], fill=255, width=1)
            for k in range(11):
                d.line([(rx + k * ppcm, ry), (rx + k * ppcm, ry - (8 if k % 5 == 0 else 4))], fill=255)
        doc.gfx(f, ruler, white)
        for k in (0, 5, 10):
            b = doc.text(f, int(rx + k * ppcm), ry + 3, str(k), fs_small, white, ident=False, kind="scale", align="center", valign="top")
        doc.text(f, max(int(rx + 10 * ppcm) + 8, b[2] + 4), ry + 3, "cm", fs_small, white, ident=False, kind="scale", align="inkleft", valign="top")
    if spec.get("noise"):
        doc.noise(f, rng, spec["noise"] * maxv)
    modality = spec["modality"]
    vendor = pick(rng, XR_VENDORS)
    ds = build_header(ctx, modality, modality, vendor[0], vendor[1], burned_attr(ctx, bool(doc.boxes)),
                      f"{kind.upper()} {view}")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = {"chest": "CHEST", "hand": "HAND", "knee": "KNEE"}[kind]
    ds.ViewPosition = view.split()[0] if view.split()[0] in ("PA", "AP", "LAT") else ""
    ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
    ds.WindowCenter, ds.WindowWidth = str(maxv // 2), str(maxv)
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.RescaleType = "US"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if mono == 2 else 1
        ds.ImagerPixelSpacing = ["0.148", "0.148"]
        ds.PatientOrientation = ["L", "F"] if kind != "hand" else ["R", "H"]
        ds.BurnedInAnnotation = ds.get("BurnedInAnnotation", "YES" if doc.boxes else "NO")
    else:
        ds.PatientOrientation = ""
    return write_case(outdir, fname, ctx, ds, doc, np.uint16, f"MONOCHROME{mono}", bits,
                      spec["syntax"], "xr", spec["variant"], j2k_cr=spec.get("cr", 15))


# --------------------------------------------------------------------------
# Endoscopy (RGB)
# --------------------------------------------------------------------------

ES_VENDORS = [("Lumora Endoscopy", "LV-190"), ("Vireo Scopes", "VS-4K"), ("Pellucid Medical", "EndoView 3")]
ES_PARAMS = [["Enh A5", "Cont: N", "Iris: Auto"], ["Str 2", "CE 1", "Zoom x1.5"],
             ["AGC ON", "Enh B3", "Col 0"], ["Shutter 1/60", "WB Auto", "Zoom x1.0"]]


def es_frames(rng, H, W, nf, cx, cy, R, shape):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    if shape == "circle":
        field = (xx - cx) ** 2 + (yy - cy) ** 2 <= R ** 2
    else:  # octagon-ish: square with cut corners
        c = R * 0.42
        field = (np.abs(xx - cx) <= R) & (np.abs(yy - cy) <= R * 0.92) & \
                (np.abs(xx - cx) + np.abs(yy - cy) <= 2 * R - c)
    lx, ly = cx + rng.uniform(-0.35, 0.35) * R, cy + rng.uniform(-0.35, 0.35) * R
    warp = smooth_field(rng, H, W, 40)
    fine = smooth_field(rng, H, W, 3)
    mott = smooth_field(rng, H, W, 14)
    hue = np.array([rng.uniform(200, 230), rng.uniform(85, 115), rng.uniform(70, 95)], np.float32)

    def vessels(d):
        for _ in range(int(rng.integers(6, 12))):
            x, y = cx + rng.uniform(-R, R), cy + rng.uniform(-R, R)
            ang = rng.uniform(0, 2 * math.pi)
            pts = [(x, y)]
            for _k in range(50):
                ang += rng.normal(0, 0.18)
                x, y = x + 4 * math.cos(ang), y + 4 * math.sin(ang)
                pts.append((x, y))
            d.line(pts, fill=255, width=int(rng.integers(1, 3)))
    vm = gblur(draw_mask(H, W, vessels), 0.9)
    highlights = [(rng.uniform(-0.75, 0.75), rng.uniform(-0.75, 0.75), rng.uniform(2, 9),
                   rng.uniform(1.5, 5), rng.uniform(0, 3)) for _ in range(int(rng.integers(4, 9)))]
    frames = []
    for t in range(nf):
        llx, lly = lx + 3 * t, ly + 1.5 * t
        r = np.hypot(xx - llx, yy - lly)
        folds = 0.5 + 0.5 * np.sin(r / (R * 0.085) + 1.8 * warp)
        folds = folds ** 2
        lumen = np.exp(-(r / (0.2 * R)) ** 2)
        light = np.clip((r / (0.95 * R)) ** 0.55, 0.05, 1.15)
        inten = light * (0.72 + 0.38 * folds + 0.06 * mott) * (1 - 0.9 * lumen) + 0.02 * fine
        img = hue[None, None, :] * inten[..., None]
        img -= vm[..., None] * np.array([70, 55, 20], np.float32) * inten[..., None]
        spec_m = np.zeros((H, W), np.float32)
        for (hx, hy, a, b, an) in highlights:
            spec_m = np.maximum(spec_m, ellipse_mask(H, W, cx + hx * R + 2 * t, cy + hy * R, a, b, an).astype(np.float32))
        spec_m = gblur(spec_m, 1.2)
        img = img * (1 - spec_m[..., None]) + 250 * spec_m[..., None]
        img += rng.standard_normal((H, W, 1)).astype(np.float32) * 2.5
        img = np.clip(img, 0, 255)
        img[~field] = 3
        frames.append(img.astype(np.float32))
    return frames, field


def gen_es(ctx, outdir, fname, spec):
    rng, I = ctx.rng, ctx.id
    W, H = spec["size"]
    nf = spec["frames"]
    R = int(H * rng.uniform(0.44, 0.48))
    cx = W - R - int(rng.integers(8, 30))
    cy = H // 2
    frames, field = es_frames(rng, H, W, nf, cx, cy, R, spec.get("shape", "circle"))
    doc = Doc(frames, 255, notext=ctx.control)
    fam = spec.get("font") or pick(rng, ["DejaVuSans", "LiberationSans", "FreeSans", "DejaVuSansMono",
                                          "LiberationMono", "NotoSansMono", "DejaVuSansCondensed", "URWGothic"])
    rmode = spec.get("render", "aa")
    size = spec.get("font_size") or int(rng.integers(12, 19))
    fs = fspec(fam, size, rmode) if fam != "Bitmap5x7" else bitmap_font(2)
    fs_small = fspec(fam, max(9, size - 4), rmode) if fam != "Bitmap5x7" else bitmap_font(1)
    U = fold if fam == "Bitmap5x7" else (lambda s: s)
    white, yellow, cyan, green = (240, 240, 240), (255, 236, 70), (90, 235, 250), (130, 255, 120)
    banner = spec.get("banner")
    asc, desc = fmetrics(fs)
    lh = asc + desc + 3
    bh = lh + 6 if banner else 0
    tstyle = pick(rng, ["hms", "hms_cs"]) if nf > 1 else pick(rng, ["hms", "hm"])
    dt = rng.uniform(1.0, 1.3) if tstyle == "hms" else rng.uniform(0.04, 0.2)
    params = pick(rng, ES_PARAMS)
    vendor = pick(rng, ES_VENDORS)
    dstyle_es = pick(rng, ["slash_eu", "us", "iso"])
    mode_lbl = pick(rng, ["NBI", "WLI", "BLI"])
    for f in range(nf):
        if banner:
            doc.frames[f][:bh] = np.array(banner, np.float32)
            doc.text(f, 4, bh // 2, U(I.inst_short), fs, yellow, ident=True, kind="institution", hk=ctx.hk("institution"), valign="middle", align="inkleft")
            doc.text(f, W - 4, bh // 2, U(vendor[1]), fs, white, ident=False, kind="tech", valign="middle", align="right")
        left = [(U(I.name("comma")), True, "name", ctx.hk("name")),
                (U(f"ID:{I.pid}"), True, "id", ctx.hk("pid")),
                (U(f"{I.sex}  {I.age}Y"), True, "age", ctx.hk("age")),
                (U(f"DOB:{Identity.fdate(I.dob, 'slash_eu')}"), True, "dob", ctx.hk("dob"))]
        doc.lines(f, 3, bh + 4, left, fs, white)
        # parameters lower left
        doc.lines(f, 3, H // 2 + 10, [(U(p), False, "tech", None) for p in params], fs_small, cyan)
        # date / time bottom-left, at the edge
        tm = U(Identity.ftime(I.acq + f * dt, tstyle))
        b = doc.text(f, 3, H - 2, tm, fs, white, ident=True, kind="time", hk=ctx.hk("time") if f == 0 else None, valign="bottom", align="inkleft")
        doc.text(f, 3, b[1] - 3, U(Identity.fdate(I.study, dstyle_es)), fs, white, ident=True, kind="date", hk=ctx.hk("date"), valign="bottom", align="inkleft")
        # colour text on colour (over tissue)
        doc.text(f, cx, cy + int(R * 0.78), U(f"Dr. {I.ref_last.title()}"), fs_small, yellow, ident=True, kind="name", hk=ctx.hk("referring"), align="center", valign="middle")
        zx = int(cx + R * 0.45) + (2 * f if nf > 1 else 0)
        doc.text(f, zx, cy - int(R * 0.62) + (f % 2), U(mode_lbl), fs, cyan, ident=False, kind="tech", align="center", valign="middle")
        if nf > 1 and f % 3 == 1:
            doc.text(f, cx - int(R * 0.5), cy - int(R * 0.3), U("FRZ"), fs, green, ident=False, kind="tech", align="center", valign="middle")
        if spec.get("low_contrast_id"):
            doc.text(f, cx - int(R * 0.35), cy + int(R * 0.35), U(I.exam_no), fs_small, ident=True, kind="id", align="center", valign="middle", contrast=spec["low_contrast_id"])
        if spec.get("noise"):
            doc.noise(f, rng, spec["noise"])
    ds = build_header(ctx, "ES", "ESVIDEO" if nf > 1 else "ES", vendor[0], vendor[1],
                      burned_attr(ctx, bool(doc.boxes)), "Endoscopy")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionContextSequence = Sequence([])
    if nf > 1:
        ds.FrameTime = f"{dt * 1000:.1f}"
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
        ds.CineRate = max(1, int(round(1 / dt)))
    return write_case(outdir, fname, ctx, ds, doc, np.uint8, "RGB", 8, spec["syntax"], "es",
                      spec["variant"], rgb_ybr=spec.get("ybr", False), j2k_cr=spec.get("cr", 12),
                      jpeg_quality=spec.get("q", 90))


# --------------------------------------------------------------------------
# Corpus plan
# --------------------------------------------------------------------------

def _syn(table, j, off):
    return table[(j // 2 + off) % len(table)]


def build_plan():
    """List of cases in generation order.  Each: (family, control, spec).

    Within a family, text cases and controls are numbered separately in this
    order; even numbers go to the 'tune' split, odd to 'heldout'.  Every
    sub-group has an even size and consecutive pairs share their transfer
    syntax, so both splits see every syntax of every sub-group."""
    P = np.random.default_rng([SEED, 7])  # plan-level choices
    plan = []
    # ---------------- ultrasound ----------------
    sizes = [(640, 480), (800, 600), (1024, 768), (720, 540)]
    probes = ["convex", "phased", "linear"]
    groups = [("grey", 8, 1, False, 0), ("grey_cine", 4, None, False, 4),
              ("rgb", 8, 1, True, 2), ("rgb_cine", 4, None, True, 0)]
    k = 0
    for name, n, frames, rgb, off in groups:
        for j in range(n):
            nf = frames or int(P.integers(3, 11))
            spec = dict(
                variant=f"us_{name}", rgb=rgb, frames=nf,
                size=sizes[k % 4] if nf == 1 else sizes[(k % 2) * 3],
                layout="ABC"[k % 3], probe=probes[(k // 3 + k) % 3],
                doppler=rgb and j % 2 == 0, syntax=_syn(SYN8, j, off),
                phone=bool(P.random() < 0.5), noise=float(P.choice([0, 0, 3, 6])),
                annot_contrast=float(P.choice([0, 0.3, 0.35, 0.45])) or None,
                ybr=bool(P.random() < 0.5), q=int(P.integers(80, 96)), cr=float(P.integers(8, 21)))
            if k % 5 == 3:
                spec["render"] = "aliased"
            plan.append(("us", False, spec))
            k += 1
    ctrl_us = [dict(variant="us_grey", rgb=False, frames=1, size=(640, 480), layout="A", probe="convex", syntax="native"),
               dict(variant="us_rgb", rgb=True, frames=1, size=(800, 600), layout="B", probe="phased", doppler=True, syntax="jpeg_baseline", q=88),
               dict(variant="us_grey_cine", rgb=False, frames=6, size=(640, 480), layout="C", probe="linear", syntax="rle", noise=4.0, nobar=True),
               dict(variant="us_rgb_cine", rgb=True, frames=4, size=(640, 480), layout="A", probe="convex", syntax="j2k_lossy", cr=12.0, ybr=True)]
    plan += [("us", True, s) for s in ctrl_us]
    # ---------------- secondary capture ----------------
    sc_groups = [
        ("viewer_rgb", 4, dict(kind="viewer", mode="rgb"), SYN8, 0),
        ("viewer_grey8", 2, dict(kind="viewer", mode="grey8", dark=False), SYN8, 2),
        ("report_rgb", 2, dict(kind="report", mode="rgb", inverted_labels=True), SYN8, 3),
        ("report_grey8", 2, dict(kind="report", mode="grey8", tinted=True), SYN8, 4),
        ("console_rgb", 2, dict(kind="console", mode="rgb"), SYN8, 5),
        ("console_grey8", 2, dict(kind="console", mode="grey8"), SYN8, 2),
        ("ct_grey16", 6, dict(kind="ct16"), SYN16, 1),
        ("viewer_rgb_mf", 2, dict(kind="viewer", mode="rgb", mf=True), SYN8, 1),
        ("console_grey8_mf", 2, dict(kind="console", mode="grey8", mf=True), SYN8, 4),
    ]
    vsizes = [(1024, 640), (960, 600), (1280, 800), (800, 600)]
    for name, n, base, table, off in sc_groups:
        for j in range(n):
            spec = dict(base, variant=f"sc_{name}", syntax=_syn(table, j, off),
                        q=int(P.integers(80, 96)), cr=float(P.integers(8, 21)), ybr=bool(P.random() < 0.5))
            kind = base["kind"]
            if kind == "viewer":
                spec["size"] = vsizes[(j + off) % 4] if not base.get("mf") else (960, 600)
                spec["dark"] = base.get("dark", j % 2 == 0)
                if j % 2 == 1:
                    spec["overlay_font"] = pick(P, ["DejaVuSansMono", "NotoSansMono", "DejaVuSansMono-Bold"])
                    spec["overlay_render"] = "nearest2x"
                    spec["overlay_color"] = (255, 255, 120)
                if base.get("mf"):
                    spec["frames"] = int(P.integers(3, 6))
                    spec["frame_ms"] = 1000.0
                if j % 3 == 2:
                    spec["noise"] = 4.0
            elif kind == "report":
                spec["size"] = (800, 1000) if j % 2 == 0 else (640, 820)
                spec["footer_contrast"] = [0.3, 0.4][j % 2]
                if j % 2 == 1:
                    spec["render"] = "aliased"
            elif kind == "console":
                spec["size"] = (720, 480) if j % 2 == 0 else (800, 600)
                if j % 2 == 1:
                    spec["fs"] = fspec(pick(P, ["DejaVuSansMono", "DejaVuSansMono-Bold", "NotoSansMono"]), 20, "nearest2x")
                    spec["fs_small"] = fspec("DejaVuSansMono", 10, "aliased")
                if base.get("mf"):
                    spec["frames"] = int(P.integers(3, 7))
                    spec["frame_ms"] = 1000.0
                if j % 2 == 0 and name == "console_grey8":
                    spec["noise"] = 6.0
            else:
                spec["size"] = [(512, 512), (640, 640), (512, 600)][j % 3]
                spec["bits"] = 12 if j % 2 == 0 else 16
                spec["overlay_max"] = j % 3 != 1
                spec["low_contrast"] = 0.3 if j % 2 == 0 else None
                spec["noise"] = 3.0 if j % 3 == 2 else 0
                if j % 3 == 1:
                    spec["render"] = "aliased"
            plan.append(("sc", False, spec))
    ctrl_sc = [dict(kind="viewer", mode="rgb", size=(1024, 640), dark=True, variant="sc_viewer_rgb", syntax="j2k_lossless"),
               dict(kind="report", mode="grey8", size=(800, 1000), variant="sc_report_grey8", syntax="jpeg_baseline", q=90),
               dict(kind="ct16", bits=12, size=(512, 512), variant="sc_ct_grey16", syntax="jpegls_lossless"),
               dict(kind="viewer", mode="grey8", size=(960, 600), dark=False, variant="sc_viewer_grey8_mf", mf=True, frames=3, syntax="native")]
    plan += [("sc", True, s) for s in ctrl_sc]
    # ---------------- radiography ----------------
    xr_groups = [("CR", 2, 0), ("CR", 1, 2), ("DX", 2, 4), ("DX", 1, 1)]
    anat = ["chest", "hand", "knee"]
    xsz = {"chest": [(768, 896), (832, 1024)], "hand": [(640, 800), (704, 864)], "knee": [(640, 896), (720, 960)]}
    k = 0
    for mod, mono, off in xr_groups:
        for j in range(4):
            a = anat[k % 3]
            spec = dict(variant=f"xr_{mod.lower()}_mono{mono}", modality=mod, mono=mono, anatomy=a,
                        size=xsz[a][j % 2], bits=[12, 14, 16, 12][(k + j) % 4],
                        syntax=_syn(SYN16, j, off), cr=float(P.integers(10, 25)),
                        collimate=(k % 4 == 1), edge=int(P.integers(1, 4)),
                        contrast=[None, 0.3, None, 0.5][(k + 1) % 4],
                        ruler=(k % 5 == 2), noise=float(P.choice([0, 0, 0.015, 0.03])),
                        small_bottom=(k % 2 == 0))
            if k % 4 == 3:
                spec["render"] = "nearest2x"
                spec["font"] = pick(P, ["DejaVuSansMono", "NotoSansMono", "DejaVuSans"])
                spec["font_size"] = [18, 20, 22][k % 3]
            elif k % 6 == 1:
                spec["render"] = "aliased"
            plan.append(("xr", False, spec))
            k += 1
    ctrl_xr = [dict(variant="xr_cr_mono2", modality="CR", mono=2, anatomy="chest", size=(768, 896), bits=12, syntax="rle"),
               dict(variant="xr_cr_mono1", modality="CR", mono=1, anatomy="knee", size=(640, 896), bits=14, syntax="j2k_lossless", collimate=True),
               dict(variant="xr_dx_mono2", modality="DX", mono=2, anatomy="hand", size=(640, 800), bits=16, syntax="native", ruler=True),
               dict(variant="xr_dx_mono1", modality="DX", mono=1, anatomy="chest", size=(832, 1024), bits=12, syntax="j2k_lossy", cr=15.0)]
    plan += [("xr", True, s) for s in ctrl_xr]
    # ---------------- endoscopy ----------------
    es_groups = [("single", 8, 1, 0), ("cine", 6, None, 4)]
    esz = [(720, 576), (640, 480), (768, 576), (800, 600)]
    k = 0
    for name, n, frames, off in es_groups:
        for j in range(n):
            nf = frames or int(P.integers(3, 9))
            spec = dict(variant=f"es_{name}", frames=nf, size=esz[k % 4] if nf == 1 else esz[1],
                        syntax=_syn(SYN8, j, off), shape=["circle", "octagon"][(k // 2) % 2],
                        banner=[None, (20, 40, 140), None, (110, 20, 90)][k % 4],
                        low_contrast_id=0.3 if k % 3 == 0 else None,
                        noise=float(P.choice([0, 0, 4])), ybr=bool(P.random() < 0.5),
                        q=int(P.integers(80, 96)), cr=float(P.integers(8, 21)))
            if k % 5 == 2:
                spec["font"] = "Bitmap5x7"
            elif k % 5 == 4:
                spec["render"] = "aliased"
            plan.append(("es", False, spec))
            k += 1
    ctrl_es = [dict(variant="es_single", frames=1, size=(720, 576), syntax="jpeg_baseline", q=85, shape="circle"),
               dict(variant="es_single", frames=1, size=(640, 480), syntax="jpegls_lossless", shape="octagon", banner=(20, 40, 140)),
               dict(variant="es_cine", frames=5, size=(640, 480), syntax="rle", shape="circle", noise=4.0)]
    plan += [("es", True, s) for s in ctrl_es]
    return plan


GEN = {"us": gen_us, "sc": gen_sc, "xr": gen_xr, "es": gen_es}


def generate(outdir):
    os.makedirs(outdir, exist_ok=True)
    plan = build_plan()
    order = np.random.default_rng([SEED, 11]).permutation(len(plan))
    names = {int(case): f"img_{pos:03d}.dcm" for pos, case in enumerate(order)}
    counters = Counter()
    entries = []
    for ci, (family, control, spec) in enumerate(plan):
        n = counters[(family, control)]
        counters[(family, control)] += 1
        ctx = Ctx(family, n, control)
        entry = GEN[family](ctx, outdir, names[ci], spec)
        entry["split"] = "tune" if n % 2 == 0 else "heldout"
        entry["case"] = f"{family}{'_ctrl' if control else ''}_{n:02d}"
        entries.append(entry)
        print(f"{names[ci]}  {entry['case']:<12} {entry['variant']:<22} {entry['transfer_syntax']:<16} "
              f"{entry['frames']:>2}f {len(entry['boxes']):>4} boxes", flush=True)
    entries.sort(key=lambda e: e["file"])
    key = dict(
        corpus="dicomveil burned-in text test corpus",
        generator="tests/data/burnedin/make_corpus.py",
        version=CORPUS_VERSION, seed=SEED,
        box_convention=("x0,y0 inclusive, x1,y1 exclusive pixel coordinates (column,row) of the "
                        "tight ink bounding box of the drawn glyphs grown by 1 px on every side "
                        "and clipped to the frame; 'ink' is the same box without the padding"),
        split_rule=("within each family, text-bearing cases and controls are numbered separately "
                    "in generation order; even -> tune, odd -> heldout"),
        files=entries,
    )
    with open(os.path.join(outdir, "key.json"), "w", encoding="utf-8") as fh:
        json.dump(key, fh, indent=1, ensure_ascii=False, sort_keys=False)
        fh.write("\n")
    return key


# --------------------------------------------------------------------------
# Check
# --------------------------------------------------------------------------

def check(outdir, compare=None):
    with open(os.path.join(outdir, "key.json"), encoding="utf-8") as fh:
        key = json.load(fh)
    problems = []
    stats = Counter()
    listed = {e["file"] for e in key["files"]}
    on_disk = {f for f in os.listdir(outdir) if f.endswith(".dcm")}
    if listed != on_disk:
        problems.append(f"key/file mismatch: {sorted(listed ^ on_disk)}")
    for e in key["files"]:
        path = os.path.join(outdir, e["file"])
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
        nf = int(ds.get("NumberOfFrames", 1))
        if nf != e["frames"]:
            problems.append(f"{e['file']}: frames {nf} != {e['frames']}")
        if nf == 1 and arr.ndim == (3 if ds.SamplesPerPixel == 3 else 2):
            arr = arr[None]
        R, Cn = int(ds.Rows), int(ds.Columns)
        if arr.shape[:3] != (nf, R, Cn):
            problems.append(f"{e['file']}: decoded shape {arr.shape}")
        if str(ds.file_meta.TransferSyntaxUID) != e["transfer_syntax_uid"]:
            problems.append(f"{e['file']}: transfer syntax mismatch")
        if str(ds.PhotometricInterpretation) != e["photometric"]:
            problems.append(f"{e['file']}: photometric mismatch")
        if not e["lossy"]:
            h = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
            if h != e["source_pixel_sha256"]:
                problems.append(f"{e['file']}: lossless decode differs from source pixels")
        if e["control"] and e["boxes"]:
            problems.append(f"{e['file']}: control with boxes")
        if not e["control"] and not e["boxes"]:
            problems.append(f"{e['file']}: text case without boxes")
        bia = ds.get("BurnedInAnnotation")
        if (bia if bia is not None else None) != e["burned_in_annotation_attr"]:
            problems.append(f"{e['file']}: BurnedInAnnotation mismatch")
        for b in e["boxes"]:
            if not (0 <= b["x0"] < b["x1"] <= Cn and 0 <= b["y0"] < b["y1"] <= R):
                problems.append(f"{e['file']}: box outside frame {b}")
            if not (0 <= b["frame"] < nf):
                problems.append(f"{e['file']}: bad frame index {b['frame']}")
            if b["header_keyword"] and b["header_keyword"] not in e["header_identifiers"]:
                problems.append(f"{e['file']}: header keyword not in header {b}")
        if e["control"] and e["burned_in_annotation_attr"] == "YES":
            problems.append(f"{e['file']}: control says BurnedInAnnotation YES")
        if nf > 1 and not e["control"]:
            clocks = {tuple(sorted(b["text"] for b in e["boxes"] if b["frame"] == fi and "time" in b["kind"]))
                      for fi in range(nf)}
            if len(clocks) != nf:
                problems.append(f"{e['file']}: clock text does not change on every frame")
        ident = [b for b in e["boxes"] if b["identifying"]]
        if ident:
            if not any(b["header_keyword"] for b in ident):
                problems.append(f"{e['file']}: no identifying box is backed by the header")
            if all(b["header_keyword"] for b in ident):
                problems.append(f"{e['file']}: every identifying box is in the header")
        # header sanity
        for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            stats[("uid", str(ds[kw].value))] += 1
        if ds.SOPClassUID != ds.file_meta.MediaStorageSOPClassUID:
            problems.append(f"{e['file']}: SOP class mismatch with file meta")
        stats["files"] += 1
        stats["controls"] += e["control"]
        stats["boxes"] += len(e["boxes"])
        stats["ident_boxes"] += len(ident)
        stats["frames"] += nf
        stats[("syntax", e["transfer_syntax"])] += 1
        stats[("modality", e["modality"])] += 1
        stats[("split", e["split"])] += 1
        stats[("split_ctrl", e["split"])] += e["control"]
        stats[("photometric", e["photometric"])] += 1
        stats[("bits", e["bits_allocated"], e["samples_per_pixel"])] += 1
        stats[("bia", e["burned_in_annotation_attr"])] += 1
        stats[("mf", nf > 1)] += 1
        for b in e["boxes"]:
            stats[("render", b["render"])] += 1
            stats[("font", b["font"])] += 1
    dup = [k for k, v in stats.items() if isinstance(k, tuple) and k[0] == "uid" and v > 1]
    # Study/Series UIDs are per case, so all three UIDs must be unique
    if dup:
        problems.append(f"duplicate UIDs: {dup[:3]}")
    boxes = [b for e in key["files"] for b in e["boxes"]]
    sizes = [b["size_px"] for b in boxes]
    cons = [b["contrast"] for b in boxes]
    print(f"files={stats['files']} controls={stats['controls']} frames={stats['frames']} "
          f"boxes={stats['boxes']} identifying={stats['ident_boxes']}")
    for cat in ("syntax", "modality", "split", "split_ctrl", "photometric", "bits", "bia", "mf", "render"):
        items = list(((k[1:] if len(k) > 2 else k[1]), v) for k, v in stats.items()
                       if isinstance(k, tuple) and k[0] == cat)
        items.sort(key=lambda t: str(t[0]))
        print(f"  {cat}: " + ", ".join(f"{a}={v}" for a, v in items))
    print(f"  fonts: {len([k for k in stats if isinstance(k, tuple) and k[0] == 'font'])} families; "
          f"size_px {min(sizes)}..{max(sizes)}; measured contrast min {min(cons):.2f} "
          f"p10 {float(np.percentile(cons, 10)):.2f}; noise_over_text boxes "
          f"{sum(b['noise_over_text'] for b in boxes)}")
    if compare:
        files = sorted(on_disk | {"key.json"})
        other = sorted(f for f in os.listdir(compare) if f.endswith(".dcm") or f == "key.json")
        if files != other:
            problems.append("compare: different file lists")
        for f in files:
            with open(os.path.join(outdir, f), "rb") as a, open(os.path.join(compare, f), "rb") as b:
                if a.read() != b.read():
                    problems.append(f"compare: {f} differs")
        print(f"  compared {len(files)} files byte-for-byte with {compare}")
    for p in problems:
        print("PROBLEM:", p)
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return not problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--check", action="store_true", help="validate an existing corpus instead of generating")
    ap.add_argument("--compare", help="with --check: folder of a second run to compare byte-for-byte")
    a = ap.parse_args(argv)
    if a.check:
        return 0 if check(a.outdir, a.compare) else 1
    generate(a.outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
