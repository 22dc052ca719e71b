#!/usr/bin/env python3
"""Copy PP-OCRv4's text detection model into dicomveil's package data, with its provenance.

Usage::

    python tools/vendor_text_detector.py [--wheel PATH] [--check]

The model is the file ``rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx`` of the
``rapidocr-onnxruntime`` 1.4.4 wheel on PyPI (Apache-2.0; the model itself is PaddleOCR's
PP-OCRv4 detector, Apache-2.0, converted to ONNX by the RapidOCR project). dicomveil runs it
with ``onnxruntime`` and its own post-processing
(:mod:`dicomveil.cleaners.pixels.network`); RapidOCR's code is not used, so neither it nor
its dependency on the full ``opencv-python`` (and its Python < 3.13 bound) becomes a
dependency of dicomveil.

Writes ``src/dicomveil/cleaners/pixels/data/text-detector/``: ``ppocr-v4-det.onnx``,
``ppocr-v4-det.json`` (package, version, wheel and model SHA-256, licence, URLs) and
``LICENSE`` (the Apache-2.0 notice). Without ``--wheel`` the wheel is downloaded with
``pip download`` (tool time only: the package never downloads anything). With ``--check``
nothing is written: the model file is compared with the committed one and its SHA-256 with
the provenance record (exit status 1 when they differ).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "rapidocr-onnxruntime"
VERSION = "1.4.4"
WHEEL = f"rapidocr_onnxruntime-{VERSION}-py3-none-any.whl"
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
TARGET = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "dicomveil"
    / "cleaners"
    / "pixels"
    / "data"
    / "text-detector"
)

NOTICE = """\
ppocr-v4-det.onnx: PaddleOCR's PP-OCRv4 text detection model ("ch_PP-OCRv4_det"),
Copyright (c) PaddlePaddle Authors, converted to ONNX by the RapidOCR project, as shipped in
the rapidocr-onnxruntime 1.4.4 wheel (https://pypi.org/project/rapidocr-onnxruntime/,
https://github.com/RapidAI/RapidOCR, https://github.com/PaddlePaddle/PaddleOCR).

Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file
except in compliance with the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the
License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND,
either express or implied. See the License for the specific language governing permissions
and limitations under the License.

dicomveil redistributes the model file unmodified (see ppocr-v4-det.json for its SHA-256).
"""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder),
         f"{PACKAGE}=={VERSION}"],
        check=True,
    )  # fmt: skip
    return folder / WHEEL


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"the {WHEEL} already downloaded")
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or _download(Path(tmp))
        wheel_bytes = wheel.read_bytes()
        with zipfile.ZipFile(wheel) as archive:
            model = archive.read(MEMBER)
    record = {
        "package": PACKAGE,
        "version": VERSION,
        "wheel": WHEEL,
        "wheel_sha256": _sha256(wheel_bytes),
        "member": MEMBER,
        "model_sha256": _sha256(model),
        "licence": "Apache-2.0",
        "model": "PaddleOCR PP-OCRv4 text detection (DB), ONNX by RapidOCR",
        "urls": [
            "https://pypi.org/project/rapidocr-onnxruntime/1.4.4/",
            "https://github.com/RapidAI/RapidOCR",
            "https://github.com/PaddlePaddle/PaddleOCR",
        ],
        "settings": "rapidocr_onnxruntime/config.yaml Det: limit_side_len 736 (min), "
        "mean/std 0.5, thresh 0.3, box_thresh 0.5, unclip_ratio 1.6, dilation",
        "tool": "tools/vendor_text_detector.py",
    }
    if args.check:
        committed = TARGET / "ppocr-v4-det.onnx"
        known = json.loads((TARGET / "ppocr-v4-det.json").read_text(encoding="utf-8"))
        same = committed.read_bytes() == model and known["model_sha256"] == _sha256(model)
        print("up to date" if same else "differs from the committed model")
        return 0 if same else 1
    TARGET.mkdir(parents=True, exist_ok=True)
    (TARGET / "ppocr-v4-det.onnx").write_bytes(model)
    (TARGET / "ppocr-v4-det.json").write_text(
        json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (TARGET / "LICENSE").write_text(NOTICE, encoding="utf-8")
    print(f"wrote {TARGET} (model {len(model)} bytes, sha256 {record['model_sha256'][:16]}…)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
