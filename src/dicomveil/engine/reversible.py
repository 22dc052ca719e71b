"""The ``reversible`` option: the original values, sealed in the file for named recipients.

Before the walk the engine keeps the dataset's top-level elements as read (:func:`snapshot`);
after it, every top-level element the profile removed or changed (a sequence with anything
changed inside, whole) goes, with its original value, into one item of the Modified Attributes
Sequence (0400,0550). That dataset (with the tags the de-identification added, so that
re-identification can take them away again) is encoded in Explicit VR Little Endian, sealed
for the recipients (:mod:`dicomveil.identity.envelope`) and stored as the Encrypted Content
(0400,0520) of one item of the Encrypted Attributes Sequence (0400,0500), whose Encrypted
Content Transfer Syntax UID (0400,0510) says how it is encoded (PS3.15 E.1.1, PS3.3
C.12.1.1.4.1). :func:`restore` does the reverse. Only what the profile and its options
changed is sealed: an element they keep unchanged is not in it. Pixel data is not sealed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from io import BytesIO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from dicomveil.identity.envelope import EnvelopeError, Recipient, open_envelope, seal

ENCRYPTED_ATTRIBUTES = 0x04000500
MODIFIED_ATTRIBUTES = 0x04000550
_CREATOR, _ADDED = 0x00090010, 0x00091001  # inside the sealed dataset only
CREATOR = "DICOMVEIL REVERSIBLE 1"
_PIXELS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_SEALED_CHARSET = "ISO_IR 192"

Snapshot = dict[int, DataElement | RawDataElement]


def snapshot(ds: Dataset) -> Snapshot:
    """The top-level elements of ``ds`` as they are now (raw elements are immutable; the
    decoded ones are copied)."""
    kept: Snapshot = {}
    for tag in ds.keys():
        element = ds.get_item(tag, keep_deferred=True)
        if element is None or int(tag) in _PIXELS:
            continue
        kept[int(tag)] = element if isinstance(element, RawDataElement) else copy.deepcopy(element)
    return kept


def _decoded(element: DataElement | RawDataElement, ds: Dataset) -> DataElement:
    if isinstance(element, DataElement):
        return element
    return convert_raw_data_element(element, encoding=ds._character_set, ds=ds)


def _unchanged(before: DataElement | RawDataElement, after: DataElement | RawDataElement) -> bool:
    if before is after:
        return True
    if isinstance(before, RawDataElement) and isinstance(after, RawDataElement):
        return before.VR == after.VR and before.value == after.value
    return False


def sealed_changes(original: Snapshot, ds: Dataset, recipients: Sequence[Recipient]) -> Dataset:
    """The Encrypted Attributes Sequence's item for what de-identification did to ``ds``.

    Parameters
    ----------
    original : Snapshot
        The elements before (:func:`snapshot`).
    ds : pydicom.dataset.Dataset
        The de-identified dataset (its Specific Character Set, which the walk keeps, decodes
        the raw originals).
    recipients : sequence of Recipient
        Who may open the envelope.

    Returns
    -------
    pydicom.dataset.Dataset
        The item: Encrypted Content Transfer Syntax UID and Encrypted Content.
    """
    changed = Dataset()
    for tag, before in original.items():
        after = ds.get_item(tag, keep_deferred=True) if tag in ds else None
        if after is not None and _unchanged(before, after):
            continue
        element = _decoded(before, ds)
        if after is not None and element == _decoded(after, ds):
            continue
        changed.add(copy.deepcopy(element))
    added = sorted(int(t) for t in ds.keys() if int(t) not in original and int(t) not in _PIXELS)
    content = Dataset()
    # UTF-8, whatever the file's own character set: every decoded original can be written in
    # it (in the sealed dataset's default repertoire, names in other scripts became "?")
    content.SpecificCharacterSet = _SEALED_CHARSET
    content.add_new(MODIFIED_ATTRIBUTES, "SQ", DicomSequence([changed]))
    content.add_new(_CREATOR, "LO", CREATOR)
    content.add_new(_ADDED, "AT", added)
    item = Dataset()
    item.EncryptedContentTransferSyntaxUID = ExplicitVRLittleEndian
    item.EncryptedContent = seal(_encode(content), recipients)
    return item


def _encode(ds: Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def restore(
    ds: Dataset, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate | None = None
) -> int:
    """Re-identify ``ds`` in place: the sealed original values back, the added elements and
    the Encrypted Attributes Sequence removed.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        A file de-identified with the ``reversible`` option.
    private_key : RSAPrivateKey
        A recipient's key.
    certificate : cryptography.x509.Certificate, optional
        Its certificate: picks its entry in the envelope.

    Returns
    -------
    int
        How many elements were restored.

    Raises
    ------
    EnvelopeError
        The file holds no envelope, none this key opens, or one that fails authentication.
    """
    items = ds.get(ENCRYPTED_ATTRIBUTES)
    if items is None or not items.value:
        raise EnvelopeError("the file holds no Encrypted Attributes Sequence (0400,0500)")
    problems: list[str] = []
    for item in items.value:
        syntax = str(item.get("EncryptedContentTransferSyntaxUID", ""))
        if syntax != ExplicitVRLittleEndian or "EncryptedContent" not in item:
            problems.append("an item in another transfer syntax")
            continue
        try:
            plain = open_envelope(bytes(item.EncryptedContent), private_key, certificate)
        except EnvelopeError as exc:
            problems.append(str(exc))
            continue
        content = read_dataset(BytesIO(plain), is_implicit_VR=False, is_little_endian=True)
        return _apply(ds, content)
    raise EnvelopeError("; ".join(dict.fromkeys(problems)) or "no envelope")


def _apply(ds: Dataset, content: Dataset) -> int:
    if content.get(_CREATOR) is None or content[_CREATOR].value != CREATOR:
        raise EnvelopeError("the envelope was not written by dicomveil's reversible option")
    modified = content[MODIFIED_ATTRIBUTES].value
    added = content[_ADDED].value if _ADDED in content else []
    for tag in [added] if isinstance(added, int) else list(added or []):
        if int(tag) in ds:
            del ds[int(tag)]
    restored = 0
    for item in modified:
        for element in item:
            ds[element.tag] = element
            restored += 1
    if ENCRYPTED_ATTRIBUTES in ds:
        del ds[ENCRYPTED_ATTRIBUTES]
    return restored
