"""The writer's element encoder (dicomveil.io.encoding) against pydicom's own writer.

On every real file of pydicom's test data (and pydicom-data when installed), as read, fully
decoded and after de-identification, the encoder must give exactly the bytes pydicom's
``write_dataset`` and ``write_data_element`` give.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset

from dicomveil import Key, Profile
from dicomveil.engine import Engine
from dicomveil.errors import InputError
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import SourceFile, read_source
from dicomveil.io.encoding import Encoder, ascii_charset
from tests.support.commands import PYDICOM_DATA, CorpusFile, real_files

FILES = real_files()
PROFILE = Profile.named("ps3.15-basic").with_options(
    ["clean-descriptors", "clean-structured-content", "retain-long-modified-dates"]
)
ENGINE = Engine(PROFILE.compile(), Pseudonymizer(Key(b"e" * 32)), today=dt.date(2025, 1, 15))


def _pydicom_dataset(ds: Dataset, implicit: bool, little: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    return fp.getvalue()


def _ours(ds: Dataset, implicit: bool, little: bool) -> bytes:
    out = bytearray()
    Encoder(implicit=implicit, little=little).dataset(out, ds)
    return bytes(out)


def _read(path: Path) -> SourceFile | None:
    try:
        source = read_source(path)
    except InputError:
        return None
    return source if source.raw_copy else None


def _compare(ds: Dataset, source: SourceFile) -> None:
    implicit = source.transfer_syntax.is_implicit_VR
    little = source.transfer_syntax.is_little_endian
    try:
        expected = _pydicom_dataset(ds, implicit, little)
    except Exception as exc:  # pydicom cannot write it: neither can we
        with pytest.raises(type(exc)):
            _ours(ds, implicit, little)
        return
    assert _ours(ds, implicit, little) == expected


@pytest.mark.parametrize("case", FILES, ids=[c.name for c in FILES])
def test_encoder_gives_pydicom_bytes(case: CorpusFile) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = _read(case.path)
        if source is None:
            return  # not read, or written by pydicom entirely (another encoding)
        _compare(source.dataset, source)  # as read: raw elements
        decoded = _read(case.path)
        assert decoded is not None
        for _ in decoded.dataset.iterall():  # decode every element, sequences included
            pass
        _compare(decoded.dataset, decoded)
        cleaned = _read(case.path)
        assert cleaned is not None
        result = ENGINE.deidentify(cleaned.dataset, has_pixel_data=cleaned.has_pixel_data)
        if result.dataset is not None:
            _compare(result.dataset, cleaned)


def test_elements_one_by_one() -> None:
    """Element by element, on a file with sequences, person names and numbers."""
    source = read_source(PYDICOM_DATA / "test_files" / "rtplan.dcm")
    encoder = Encoder(implicit=True, little=True)
    checked = 0
    for elem in source.dataset.iterall():
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = True, True
        write_data_element(fp, elem, "ISO_IR 100")
        out = bytearray()
        encoder.element(out, elem, "ISO_IR 100")
        assert bytes(out) == fp.getvalue(), elem.tag
        checked += 1
    assert checked > 100


def test_ascii_charsets() -> None:
    assert ascii_charset(None)
    assert ascii_charset("ISO_IR 100")
    assert ascii_charset(["ISO 2022 IR 6", "ISO 2022 IR 100"])
    assert not ascii_charset("ISO 2022 IR 87")
    assert not ascii_charset(["ISO 2022 IR 6", "ISO 2022 IR 149"])
    assert not ascii_charset("GB18030")
