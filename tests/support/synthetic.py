"""Deterministic synthetic DICOM files carrying known, explicit fake PHI.

Tests, benchmarks and the README sample need realistic DICOM objects whose every
identifying value is known, so that a test can search the de-identified output bytes
for each of them.  Everything here is deterministic: the same arguments give the
same datasets and, once written, the same bytes (UIDs are name-based UUIDs of the seed,
written as ``2.25.`` UIDs; no clock is read).

All fake values are plain ASCII, so a leak test can look for ``value.encode()`` in
the output bytes although the files declare Specific Character Set ``ISO_IR 100``.

Seeds and identity:

* study-level attributes (Study Instance UID, dates, accession number, physicians,
  institution) derive from ``(patient.patient_id, seed)``: a CT and an MR series
  built for the same patient with the same seed belong to the same study;
* series-level attributes derive from ``(modality, patient.patient_id, seed)``; the
  transfer syntax does not change any value, only the encoding.

Only pydicom and the standard library are used (no numpy).
"""

from __future__ import annotations

import random
import string
import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom import dcmwrite
from pydicom._uid_dict import UID_dictionary  # not re-exported by pydicom.uid for mypy
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
)

__all__ = [
    "SUPPORTED_CT_TRANSFER_SYNTAXES",
    "FakePatient",
    "PhiRecord",
    "ct_series",
    "fake_patient",
    "mr_series",
    "phi_of",
    "us_burned_in",
    "write_series",
]

SUPPORTED_CT_TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian}
)

IMPLEMENTATION_VERSION_NAME = "DICOMVEIL_SYN1"
CHARACTER_SET = "ISO_IR 100"

# Detached Study Management SOP Class (retired), the class that Referenced Study
# Sequence items traditionally reference.
_STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"

_AGE_REFERENCE = date(2024, 6, 30)
_STUDY_EPOCH = date(2024, 1, 8)

# --------------------------------------------------------------------------- lists
# Deliberately distinctive values (no common English words), so that a byte search
# for one of them does not hit unrelated text.

_SURNAMES = (
    "HOLLOWAY",
    "FITZGERALD",
    "NAKAMURA",
    "OKONKWO",
    "VANDERBERG",
    "KOWALCZYK",
    "ABERNATHY",
    "DUBROVSKY",
    "LINDQVIST",
    "MACALLISTER",
    "ESPINOZA",
    "THORNBURY",
    "WHITLOCK",
    "BRANNIGAN",
    "QUINTERO",
    "ACHTERBERG",
)
_MAIDEN_NAMES = ("PENDLETON", "ARKWRIGHT", "SOLBERG", "FAIRWEATHER", "CASTELLANOS", "UMBERTI")
_MALE_GIVEN = (
    "JONATHAN",
    "BARTHOLOMEW",
    "RAFAEL",
    "DESMOND",
    "TOBIAS",
    "LEOPOLD",
    "EZEKIEL",
    "MALCOLM",
)
_FEMALE_GIVEN = (
    "MARGARETHE",
    "ROSALIND",
    "BEATRIX",
    "PRISCILLA",
    "GWENDOLYN",
    "ISADORA",
    "CORDELIA",
    "HENRIETTA",
)
_PHYSICIANS = (
    "KILDARE^JAMES",
    "ZHIVAGO^YURI",
    "QUINCY^RANDOLPH",
    "CRUSHER^BEVERLY",
    "MCCOY^LEONARD",
    "OCTAVIUS^OTTO",
    "BASHIR^JULIAN",
    "CARTWRIGHT^ELSPETH",
    "FEELGOOD^MORTIMER",
    "LANGSTROM^HELGA",
)
_OPERATORS = (
    "PEMBERTON^AGNES",
    "ROWNTREE^SILAS",
    "ABERCROMBIE^NIGEL",
    "VOSKUIJLEN^MAARTJE",
    "TREMBLAY^GASTON",
)
_ISSUERS = ("SAINT ELSEWHERE MRN", "MERCY WEST HOSPITAL ID", "GREENFIELD CLINIC MRN")
_OTHER_ISSUERS = ("NATIONAL HEALTH REGISTRY", "ACME MUTUAL INSURANCE")
_STREETS = ("ELM STREET", "WISTERIA LANE", "PRIVET DRIVE", "ACACIA AVENUE", "MAPLE COURT")
_CITIES = ("SPRINGFIELD IL 62704", "RIVERDALE NY 10471", "SHELBYVILLE TN 37160")
_INSTITUTIONS = (
    ("SAINT ELSEWHERE GENERAL HOSPITAL", "736 CAMBRIDGE STREET, BOSTON MA 02135"),
    ("MERCY WEST MEDICAL CENTER", "1200 LAKESHORE DRIVE, SEATTLE WA 98109"),
    ("GREENFIELD COMMUNITY CLINIC", "45 ORCHARD ROAD, GREENFIELD MA 01301"),
)
_ETHNIC_GROUPS = ("NORDIC", "IBERIAN", "PACIFIC", "ANDEAN")
_HONORIFICS = frozenset({"DR", "MR", "MRS", "MS", "MISS", "PROF", "MD", "PHD", "JR", "SR"})

# ---------------------------------------------------------------------- data types


@dataclass(frozen=True)
class FakePatient:
    """An invented patient; every value is written into the files built for it."""

    name: str  # DICOM PN with carets, e.g. "DOE^JOHN^Q"
    patient_id: str
    issuer: str
    birth_date: str  # YYYYMMDD
    sex: str  # "M" or "F"
    age: str  # e.g. "052Y"
    address: str
    phone: str
    other_ids: tuple[str, ...]

    @property
    def surname(self) -> str:
        return self.name.split("^")[0]

    @property
    def given_name(self) -> str:
        parts = self.name.split("^")
        return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class PhiRecord:
    """Every identifying value found in a set of datasets, for leak tests.

    ``names`` holds whole PN values and their components of two or more characters
    (honorifics such as ``DR`` left out); ``dates`` holds DA and DT values (and the
    date part of each DT); ``uids`` holds instance UIDs (UI values that are not
    well-known UIDs of the DICOM standard, nor the Implementation Class UID).
    """

    names: frozenset[str] = field(default_factory=frozenset)
    ids: frozenset[str] = field(default_factory=frozenset)
    dates: frozenset[str] = field(default_factory=frozenset)
    texts: frozenset[str] = field(default_factory=frozenset)
    uids: frozenset[str] = field(default_factory=frozenset)

    def all_values(self) -> frozenset[str]:
        """The union of every category."""
        return self.names | self.ids | self.dates | self.texts | self.uids


# ------------------------------------------------------------------------- helpers


_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicomveil:synthetic")


def _uid(*parts: object) -> str:
    # ``generate_uid(prefix=None, ...)`` ignores ``entropy_srcs`` (it returns a random
    # UUID), so derive a name-based UUID (version 5) and write it as a "2.25." UID
    # (PS3.5 B.2): deterministic, and at most 44 characters.
    return f"2.25.{uuid.uuid5(_UUID_NAMESPACE, '|'.join(map(str, parts))).int}"


def _rng(*parts: object) -> random.Random:
    # A str seed is hashed with SHA-512 (seed version 2): stable across runs and
    # independent of PYTHONHASHSEED.
    return random.Random("|".join(["dicomveil-synthetic", *map(str, parts)]))


def _da(d: date) -> str:
    return d.strftime("%Y%m%d")


def _tm(t: datetime) -> str:
    return t.strftime("%H%M%S")


def _ds(value: float, digits: int = 6) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fake_patient(seed: int) -> FakePatient:
    """A plausible invented patient; the same seed always gives the same patient."""
    rng = _rng("patient", seed)
    sex = rng.choice("MF")
    given = rng.choice(_MALE_GIVEN if sex == "M" else _FEMALE_GIVEN)
    surname = rng.choice(_SURNAMES)
    middle = rng.choice(string.ascii_uppercase)
    birth = date(1936, 1, 1) + timedelta(days=rng.randrange(365 * 68))
    years = _AGE_REFERENCE.year - birth.year
    if (_AGE_REFERENCE.month, _AGE_REFERENCE.day) < (birth.month, birth.day):
        years -= 1
    return FakePatient(
        name=f"{surname}^{given}^{middle}",
        patient_id=f"SEH{rng.randrange(10**7):07d}",
        issuer=rng.choice(_ISSUERS),
        birth_date=_da(birth),
        sex=sex,
        age=f"{years:03d}Y",
        address=f"{rng.randrange(11, 9999)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}",
        phone=f"+1 555 {rng.randrange(100, 1000)} {rng.randrange(10**4):04d}",
        other_ids=(f"NHR{rng.randrange(10**8):08d}", f"INS-{rng.randrange(10**6):06d}"),
    )


@dataclass(frozen=True)
class _Study:
    uid: str
    when: datetime
    accession: str
    study_id: str
    description: str
    referring: str
    reading: str
    institution: str
    institution_address: str
    department: str
    requested_procedure_id: str
    requested_procedure_description: str
    creator_uid: str
    other_name: str
    weight: str
    size: str
    ethnic_group: str


def _study(patient: FakePatient, seed: int) -> _Study:
    rng = _rng("study", patient.patient_id, seed)
    day = _STUDY_EPOCH + timedelta(days=rng.randrange(300))
    when = datetime(day.year, day.month, day.day, rng.randrange(7, 17), rng.randrange(60))
    institution, address = rng.choice(_INSTITUTIONS)
    referring, reading = rng.sample(_PHYSICIANS, 2)
    description = rng.choice(
        (
            "ONCOLOGY FOLLOW-UP CHEST AND BRAIN",
            "TRAUMA WORK-UP AFTER FALL",
            "STAGING EXAM PER DR " + referring.split("^")[0],
        )
    )
    weight = 48 + rng.randrange(60)
    return _Study(
        uid=_uid("study", patient.patient_id, seed),
        when=when,
        accession=f"ACC{rng.randrange(10**9):09d}",
        study_id=f"ST{rng.randrange(10**6):06d}",
        description=description,
        referring=referring,
        reading=reading,
        institution=institution,
        institution_address=address,
        department="DIAGNOSTIC RADIOLOGY",
        requested_procedure_id=f"RP{rng.randrange(10**7):07d}",
        requested_procedure_description=description.title(),
        creator_uid=_uid("creator", institution),
        other_name=f"{_rng('maiden', patient.name).choice(_MAIDEN_NAMES)}^{patient.given_name}",
        weight=str(weight),
        size=_ds(1.50 + rng.randrange(45) / 100, 2),
        ethnic_group=rng.choice(_ETHNIC_GROUPS),
    )


@dataclass(frozen=True)
class _Series:
    modality: str
    uid: str
    frame_of_reference_uid: str
    number: int
    when: datetime
    description: str
    protocol: str
    body_part: str
    performing: str
    operator: str
    station: str
    serial: str
    manufacturer: str
    model: str
    software: str
    scheduled_step_id: str
    performed_step_id: str
    sop_uids: tuple[str, ...]


def _series(
    modality: str,
    patient: FakePatient,
    seed: int,
    study: _Study,
    n_instances: int,
    *,
    description: str,
    protocol: str,
    body_part: str,
    manufacturer: str,
    model: str,
    software: str,
    number: int,
) -> _Series:
    rng = _rng(modality, "series", patient.patient_id, seed)
    return _Series(
        modality=modality,
        uid=_uid(modality, "series", patient.patient_id, seed),
        frame_of_reference_uid=_uid(modality, "for", patient.patient_id, seed),
        number=number,
        when=study.when + timedelta(minutes=3 + rng.randrange(25), seconds=rng.randrange(60)),
        description=description,
        protocol=protocol,
        body_part=body_part,
        performing=rng.choice(
            [p for p in _PHYSICIANS if p not in (study.referring, study.reading)]
        ),
        operator=rng.choice(_OPERATORS),
        station=f"{modality}{rng.choice(('SCAN', 'ROOM', 'SUITE'))}{rng.randrange(1, 99):02d}",
        serial=f"SN{rng.randrange(10**8):08d}",
        manufacturer=manufacturer,
        model=model,
        software=software,
        scheduled_step_id=f"SPS{rng.randrange(10**7):07d}",
        performed_step_id=f"PPS{rng.randrange(10**7):07d}",
        sop_uids=tuple(
            _uid(modality, "sop", patient.patient_id, seed, i) for i in range(n_instances)
        ),
    )


def _new_file_dataset(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\x00" * 128)
    ds.SpecificCharacterSet = CHARACTER_SET
    return ds


def _fill_common(
    ds: Dataset,
    patient: FakePatient,
    study: _Study,
    series: _Series,
    index: int,
    sop_class: str,
) -> datetime:
    """Patient, study, series, equipment, general image and SOP common modules.

    Returns the acquisition time of this instance.
    """
    n = len(series.sop_uids)
    sop_uid = series.sop_uids[index]
    acquired = series.when + timedelta(seconds=2 * index)
    created = acquired + timedelta(seconds=40)

    # SOP Common
    ds.ImageType = ["ORIGINAL", "PRIMARY"]  # refined by the modality builders
    ds.InstanceCreationDate = _da(created)
    ds.InstanceCreationTime = _tm(created)
    ds.InstanceCreatorUID = study.creator_uid
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid

    # General Study / General Series / Equipment dates and identifiers
    ds.StudyDate = _da(study.when)
    ds.SeriesDate = _da(series.when)
    ds.AcquisitionDate = _da(acquired)
    ds.ContentDate = _da(created)
    ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S") + f".{index * 2500:06d}"
    ds.StudyTime = _tm(study.when)
    ds.SeriesTime = _tm(series.when)
    ds.AcquisitionTime = _tm(acquired)
    ds.ContentTime = _tm(created)
    ds.AccessionNumber = study.accession
    ds.Modality = series.modality
    ds.Manufacturer = series.manufacturer
    ds.InstitutionName = study.institution
    ds.InstitutionAddress = study.institution_address
    ds.ReferringPhysicianName = study.referring
    ds.StationName = series.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.InstitutionalDepartmentName = study.department
    ds.PerformingPhysicianName = series.performing
    ds.NameOfPhysiciansReadingStudy = study.reading
    ds.OperatorsName = series.operator
    ds.ManufacturerModelName = series.model

    referenced_study = Dataset()
    referenced_study.ReferencedSOPClassUID = _STUDY_SOP_CLASS
    referenced_study.ReferencedSOPInstanceUID = study.uid
    ds.ReferencedStudySequence = DicomSequence([referenced_study])

    # Reference the next instance of the series (the series' only one refers to itself).
    referenced_image = Dataset()
    referenced_image.ReferencedSOPClassUID = sop_class
    referenced_image.ReferencedSOPInstanceUID = series.sop_uids[(index + 1) % n]
    ds.ReferencedImageSequence = DicomSequence([referenced_image])
    if index > 0:
        source = Dataset()
        source.ReferencedSOPClassUID = sop_class
        source.ReferencedSOPInstanceUID = series.sop_uids[0]
        ds.SourceImageSequence = DicomSequence([source])

    # Patient
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = patient.issuer
    ds.PatientBirthDate = patient.birth_date
    ds.PatientBirthTime = f"{_rng('birth', patient.patient_id).randrange(24):02d}1500"
    ds.PatientSex = patient.sex
    other_ids = []
    for i, other in enumerate(patient.other_ids):
        item = Dataset()
        item.PatientID = other
        item.IssuerOfPatientID = _OTHER_ISSUERS[i % len(_OTHER_ISSUERS)]
        item.TypeOfPatientID = "TEXT"
        other_ids.append(item)
    ds.OtherPatientIDsSequence = DicomSequence(other_ids)
    ds.OtherPatientNames = study.other_name
    ds.PatientAge = patient.age
    ds.PatientSize = study.size
    ds.PatientWeight = study.weight
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.EthnicGroup = study.ethnic_group
    ds.AdditionalPatientHistory = (
        f"Previously imaged at {study.institution.title()}; referred by Dr. "
        f"{study.referring.split('^')[0].title()}"
    )
    ds.PatientComments = (
        f"{patient.given_name.title()} {patient.surname.title()} prefers phone contact at "
        f"{patient.phone}; lives at {patient.address.title()}"
    )

    # General Equipment / General Series / General Study
    ds.DeviceSerialNumber = series.serial
    ds.SoftwareVersions = series.software
    ds.ProtocolName = series.protocol
    ds.BodyPartExamined = series.body_part
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = index + 1
    ds.ImageComments = f"seen by Dr. {study.reading.split('^')[0].title()}"

    request = Dataset()
    request.AccessionNumber = study.accession
    request.StudyInstanceUID = study.uid
    request.RequestedProcedureDescription = study.requested_procedure_description
    request.ScheduledProcedureStepDescription = series.description
    request.ScheduledProcedureStepID = series.scheduled_step_id
    request.RequestedProcedureID = study.requested_procedure_id
    ds.RequestAttributesSequence = DicomSequence([request])
    ds.PerformedProcedureStepStartDate = _da(series.when)
    ds.PerformedProcedureStepStartTime = _tm(series.when)
    ds.PerformedProcedureStepID = series.performed_step_id
    ds.PerformedProcedureStepDescription = series.description
    return acquired


def _set_frame_of_reference(ds: Dataset, series: _Series) -> None:
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def _pixels16(rng: random.Random, n_pixels: int, bits_stored: int, big_endian: bool) -> bytes:
    """Pseudo-random unsigned pixel values below 2**bits_stored, as OW bytes."""
    raw = bytearray(rng.randbytes(2 * n_pixels))
    mask = (1 << (bits_stored - 8)) - 1
    table = bytes(b & mask for b in range(256))
    high = slice(0, None, 2) if big_endian else slice(1, None, 2)
    raw[high] = raw[high].translate(table)
    return bytes(raw)


def _words(values: Sequence[int], big_endian: bool) -> bytes:
    return struct.pack(f"{'>' if big_endian else '<'}{len(values)}H", *values)


def _set_pixels16(
    ds: Dataset, rng: random.Random, rows: int, columns: int, big_endian: bool, signed: bool
) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 1 if signed else 0
    ds.add_new(0x7FE00010, "OW", _pixels16(rng, rows * columns, 12, big_endian))


def _check_size(n: int, rows: int, columns: int) -> None:
    if n < 1:
        raise ValueError("n_slices must be at least 1")
    if not (8 <= rows <= 4096 and 8 <= columns <= 4096):
        raise ValueError("rows and columns must be between 8 and 4096")


# ---------------------------------------------------------------------------- CT


def ct_series(
    patient: FakePatient,
    *,
    seed: int,
    n_slices: int = 3,
    rows: int = 64,
    columns: int = 64,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> list[FileDataset]:
    """An axial CT series (CT Image Storage), one slice per instance.

    Private content: a GE block ``0043`` ("GEMS_PARM_01", safe-private 0043,xx27 and
    0043,xx39) and an "ACME PRIVATE" block ``0009`` holding the patient's name
    (0009,1001 LO), a private date (0009,1003 DA) and a private sequence 0009,1002
    whose item holds the patient ID (0009,1010 LO) and the Study Instance UID
    (0009,1011 UI).  The first slice also carries a retired curve group ``5000``;
    the last one a "Philips PET Private Group" 7053,1000 DS (safe private).
    """
    _check_size(n_slices, rows, columns)
    ts = UID(transfer_syntax)
    if ts not in SUPPORTED_CT_TRANSFER_SYNTAXES:
        raise ValueError(f"unsupported transfer syntax for ct_series: {transfer_syntax}")
    big_endian = ts == ExplicitVRBigEndian
    study = _study(patient, seed)
    series = _series(
        "CT",
        patient,
        seed,
        study,
        n_slices,
        description="CT CHEST W/O CONTRAST 2.5MM",
        protocol="5.1 ROUTINE CHEST",
        body_part="CHEST",
        manufacturer="GE MEDICAL SYSTEMS",
        model="LightSpeed VCT",
        software="LightSpeedverrel",
        number=2,
    )
    rng = _rng("CT", "pixels", patient.patient_id, seed)
    fov = 360.0
    spacing = fov / columns
    thickness = 2.5
    out: list[FileDataset] = []
    for i in range(n_slices):
        ds = _new_file_dataset(CTImageStorage, series.sop_uids[i], ts)
        _fill_common(ds, patient, study, series, i, CTImageStorage)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "HFS"
        _set_frame_of_reference(ds, series)
        z = -120.0 + i * thickness
        # CT Image
        ds.ScanOptions = "HELICAL MODE"
        ds.SliceThickness = _ds(thickness)
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = _ds(fov)
        ds.DistanceSourceToDetector = "949.075012"
        ds.DistanceSourceToPatient = "541"
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "163"
        ds.RotationDirection = "CW"
        ds.ExposureTime = "500"
        ds.XRayTubeCurrent = 250
        ds.Exposure = 125
        ds.FilterType = "BODY FILTER"
        ds.GeneratorPower = 30000
        ds.FocalSpots = "0.7"
        ds.ConvolutionKernel = "STANDARD"
        ds.SpiralPitchFactor = 1.375
        # Image Plane
        ds.ImagePositionPatient = [_ds(-fov / 2 + spacing / 2), _ds(-fov / 2 + spacing / 2), _ds(z)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = _ds(z)
        ds.PixelSpacing = [_ds(spacing), _ds(spacing)]
        # Image Pixel / CT Image / VOI LUT
        _set_pixels16(ds, rng, rows, columns, big_endian, signed=False)
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.LossyImageCompression = "00"
        ds.BurnedInAnnotation = "NO"

        ge = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
        ge.add_new(0x27, "SH", "1.375:1")
        ge.add_new(0x39, "IS", [0, 8, 0, 0])

        acme = ds.private_block(0x0009, "ACME PRIVATE", create=True)
        acme.add_new(0x01, "LO", patient.name)
        item = Dataset()
        inner = item.private_block(0x0009, "ACME PRIVATE", create=True)
        inner.add_new(0x10, "LO", patient.patient_id)
        inner.add_new(0x11, "UI", study.uid)
        acme.add_new(0x02, "SQ", DicomSequence([item]))
        acme.add_new(0x03, "DA", _da(study.when))

        if i == 0:
            n_points = 16
            curve = [(k * 37 + seed) % 4096 for k in range(n_points)]
            ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
            ds.add_new(0x50000010, "US", n_points)  # Number of Points
            ds.add_new(0x50000020, "CS", "PROF")  # Type of Data
            ds.add_new(0x50000103, "US", 0)  # Data Value Representation
            ds.add_new(0x50003000, "OW", _words(curve, big_endian))  # Curve Data
        if i == n_slices - 1:
            philips = ds.private_block(0x7053, "Philips PET Private Group", create=True)
            philips.add_new(0x00, "DS", "0.000412")
        out.append(ds)
    return out


# ---------------------------------------------------------------------------- MR


def _csa2(tags: Sequence[tuple[str, str, Sequence[str]]]) -> bytes:
    """A Siemens CSA2 ("SV10") header holding the given (name, VR, values) tags."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<2I", len(tags), 77)
    for name, vr, values in tags:
        n_items = max(6, len(values))
        out += name.encode("ascii").ljust(64, b"\x00")
        out += struct.pack("<i", len(values))
        out += vr.encode("ascii").ljust(4, b"\x00")
        out += struct.pack("<3i", 0, n_items, 77)
        for k in range(n_items):
            data = (values[k].encode("ascii") + b"\x00") if k < len(values) else b""
            out += struct.pack("<4i", len(data), len(data), 77, len(data))
            out += data + b"\x00" * (-len(data) % 4)
    out += b"\x00" * 4
    if len(out) % 2:
        out += b"\x00"
    return bytes(out)


def _overlay_bits(rows: int, columns: int, rng: random.Random) -> bytes:
    """A rectangle outline as packed overlay bits (first pixel in the lowest bit)."""
    bits = bytearray((rows * columns + 7) // 8)
    r0, c0 = (
        rows // 4 + rng.randrange(rows // 8 + 1),
        columns // 4 + rng.randrange(columns // 8 + 1),
    )
    r1, c1 = r0 + rows // 3, c0 + columns // 3

    def mark(r: int, c: int) -> None:
        k = r * columns + c
        bits[k // 8] |= 1 << (k % 8)

    for c in range(c0, c1 + 1):
        mark(r0, c)
        mark(r1, c)
    for r in range(r0, r1 + 1):
        mark(r, c0)
        mark(r, c1)
    if len(bits) % 2:
        bits.append(0)
    return bytes(bits)


def mr_series(
    patient: FakePatient,
    *,
    seed: int,
    n_slices: int = 3,
    rows: int = 64,
    columns: int = 64,
) -> list[FileDataset]:
    """A sagittal T1 MPRAGE series (MR Image Storage), Explicit VR Little Endian.

    Private content: Siemens-like "SIEMENS CSA HEADER" (0029,10xx; the OB headers
    0029,1010 and 0029,1020 contain the patient's name in ASCII), "SIEMENS MEDCOM
    HEADER" (0029,11xx) and "SIEMENS MR HEADER" (0019,10xx, with the safe-private
    offsets 0C, 0D, 0E and 27).  Each slice has a graphics overlay in group 6000
    whose description and label name the patient's surname.
    """
    _check_size(n_slices, rows, columns)
    study = _study(patient, seed)
    series = _series(
        "MR",
        patient,
        seed,
        study,
        n_slices,
        description="T1 MPRAGE sag 1mm",
        protocol="t1_mprage_sag_p2_iso",
        body_part="HEAD",
        manufacturer="SIEMENS",
        model="Prisma",
        software="syngo MR E11",
        number=3,
    )
    rng = _rng("MR", "pixels", patient.patient_id, seed)
    fov = 256.0
    row_spacing, col_spacing = fov / rows, fov / columns
    thickness = 1.0
    out: list[FileDataset] = []
    for i in range(n_slices):
        ds = _new_file_dataset(MRImageStorage, series.sop_uids[i], ExplicitVRLittleEndian)
        _fill_common(ds, patient, study, series, i, MRImageStorage)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]
        ds.PatientPosition = "HFS"
        _set_frame_of_reference(ds, series)
        x = thickness * (i - (n_slices - 1) / 2)
        # MR Image
        ds.ScanningSequence = ["GR", "IR"]
        ds.SequenceVariant = ["SP", "MP"]
        ds.ScanOptions = ["IR"]
        ds.MRAcquisitionType = "3D"
        ds.SequenceName = "*tfl3d1_16ns"
        ds.AngioFlag = "N"
        ds.SliceThickness = _ds(thickness)
        ds.RepetitionTime = "2300"
        ds.EchoTime = "2.98"
        ds.InversionTime = "900"
        ds.NumberOfAverages = "1"
        ds.ImagingFrequency = "123.251"
        ds.ImagedNucleus = "1H"
        ds.EchoNumbers = "1"
        ds.MagneticFieldStrength = "3"
        ds.SpacingBetweenSlices = _ds(thickness)
        ds.NumberOfPhaseEncodingSteps = columns
        ds.EchoTrainLength = 1
        ds.PercentSampling = "100"
        ds.PercentPhaseFieldOfView = "100"
        ds.PixelBandwidth = "240"
        ds.ReceiveCoilName = "HeadNeck_20"
        ds.AcquisitionMatrix = [0, rows, columns, 0]
        ds.InPlanePhaseEncodingDirection = "ROW"
        ds.FlipAngle = "9"
        ds.VariableFlipAngleFlag = "N"
        ds.SAR = "0.0513"
        ds.dBdt = "0"
        # Image Plane
        ds.ImagePositionPatient = [_ds(x), _ds(-fov / 2), _ds(fov / 2)]
        ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
        ds.SliceLocation = _ds(x)
        ds.PixelSpacing = [_ds(row_spacing), _ds(col_spacing)]
        _set_pixels16(ds, rng, rows, columns, big_endian=False, signed=False)
        ds.WindowCenter = "600"
        ds.WindowWidth = "1200"
        ds.LossyImageCompression = "00"
        ds.BurnedInAnnotation = "NO"

        # Overlay Plane, group 6000
        ds.add_new(0x60000010, "US", rows)  # Overlay Rows
        ds.add_new(0x60000011, "US", columns)  # Overlay Columns
        ds.add_new(0x60000022, "LO", f"lesion outline for {patient.surname.title()}")
        ds.add_new(0x60000040, "CS", "G")  # Overlay Type
        ds.add_new(0x60000050, "SS", [1, 1])  # Overlay Origin
        ds.add_new(0x60000100, "US", 1)  # Overlay Bits Allocated
        ds.add_new(0x60000102, "US", 0)  # Overlay Bit Position
        ds.add_new(0x60001500, "LO", f"{patient.surname} ROI 1")  # Overlay Label
        ds.add_new(0x60003000, "OW", _overlay_bits(rows, columns, rng))

        # Siemens private groups
        mr_header = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        mr_header.add_new(0x08, "CS", "IMAGE NUM 4")
        mr_header.add_new(0x09, "LO", "1.0")
        mr_header.add_new(0x0C, "IS", 0)  # B Value (safe private)
        mr_header.add_new(0x0D, "CS", "NONE")  # Diffusion Directionality (safe private)
        mr_header.add_new(0x0E, "FD", [0.0, 0.0, 1.0])  # Diffusion Gradient Direction
        mr_header.add_new(0x27, "FD", [0.0] * 6)  # B Matrix (safe private)

        csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        medcom = ds.private_block(0x0029, "SIEMENS MEDCOM HEADER", create=True)
        image_csa = _csa2(
            [
                ("EchoLinePosition", "IS", [str(columns // 2)]),
                ("SliceNormalVector", "FD", ["1.00000000", "0.00000000", "0.00000000"]),
                ("ImaPATModeText", "LO", ["p2"]),
                ("ICE_Dims", "LO", [f"X_1_1_1_{i + 1}_1_1_1_1_1_1_1_1"]),
                ("PatientName", "PN", [patient.name]),
            ]
        )
        series_csa = _csa2(
            [
                ("UsedPatientWeight", "IS", [study.weight]),
                ("SARMostCriticalAspect", "DS", ["3.2", "2.8", "0.0"]),
                (
                    "MrPhoenixProtocol",
                    "UN",
                    [
                        "### ASCCONV BEGIN ###\n"
                        f'tProtocolName = "{series.protocol}"\n'
                        f'sPatient.tPatientName = "{patient.name}"\n'
                        "### ASCCONV END ###"
                    ],
                ),
            ]
        )
        csa.add_new(0x08, "CS", "IMAGE NUM 4")
        csa.add_new(0x09, "LO", "20100114")
        csa.add_new(0x10, "OB", image_csa)
        csa.add_new(0x18, "CS", "MR")
        csa.add_new(0x19, "LO", "20100114")
        csa.add_new(0x20, "OB", series_csa)
        medcom.add_new(0x08, "CS", "MEDCOM 1")
        medcom.add_new(0x09, "LO", "20041124")
        out.append(ds)
    return out


# ---------------------------------------------------------------------------- US

_FONT: dict[str, str] = {
    "A": "010101111101101",
    "B": "110101110101110",
    "C": "011100100100011",
    "D": "110101101101110",
    "E": "111100110100111",
    "F": "111100110100100",
    "G": "011100101101011",
    "H": "101101111101101",
    "I": "111010010010111",
    "J": "001001001101010",
    "K": "101101110101101",
    "L": "100100100100111",
    "M": "101111111101101",
    "N": "110101101101101",
    "O": "010101101101010",
    "P": "110101110100100",
    "Q": "010101101110011",
    "R": "110101110101101",
    "S": "011100010001110",
    "T": "111010010010010",
    "U": "101101101101111",
    "V": "101101101101010",
    "W": "101101111111101",
    "X": "101101010101101",
    "Y": "101101010010010",
    "Z": "111001010100111",
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "110001010100111",
    "3": "110001010001110",
    "4": "101101111001001",
    "5": "111100110001110",
    "6": "011100111101111",
    "7": "111001010010010",
    "8": "111101111101111",
    "9": "111101111001110",
    "-": "000000111000000",
    "/": "001001010100100",
    ":": "000010000010000",
    ".": "000000000000010",
    ",": "000000000010100",
}


def _burn_text(pixels: bytearray, columns: int, lines: Sequence[str], x0: int, y0: int) -> None:
    """Draw text with a 3x5 font, white on an RGB (planar configuration 0) image."""
    for n, line in enumerate(lines):
        for k, char in enumerate(line.upper()):
            glyph = _FONT.get(char)
            x = x0 + 4 * k
            if glyph is None or x + 3 > columns:
                continue
            for gy in range(5):
                for gx in range(3):
                    if glyph[gy * 3 + gx] == "1":
                        p = ((y0 + 7 * n + gy) * columns + x + gx) * 3
                        pixels[p : p + 3] = b"\xff\xff\xff"


def us_burned_in(patient: FakePatient, *, seed: int) -> FileDataset:
    """An RGB ultrasound image (Ultrasound Image Storage) with burned-in PHI.

    Burned In Annotation is "YES": the top rows show the patient's name, ID and
    birth date and the study date, drawn in white with a 3x5 pixel font.
    """
    rows, columns = 120, 160
    study = _study(patient, seed)
    series = _series(
        "US",
        patient,
        seed,
        study,
        1,
        description="US ABDOMEN LIVER",
        protocol="ABDOMEN GENERAL",
        body_part="ABDOMEN",
        manufacturer="ACME ULTRASOUND",
        model="SonoVista 5",
        software="4.2.1",
        number=1,
    )
    ds = _new_file_dataset(UltrasoundImageStorage, series.sop_uids[0], ExplicitVRLittleEndian)
    _fill_common(ds, patient, study, series, 0, UltrasoundImageStorage)
    del ds.ReferencedImageSequence  # would only refer to itself
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    ds.TransducerData = ["C5-2"]
    ds.ProcessingFunction = "ABDOMEN"

    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = 24
    region.RegionLocationMaxX1 = columns - 1
    region.RegionLocationMaxY1 = rows - 1
    region.PhysicalUnitsXDirection = 3
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 0.05
    region.PhysicalDeltaY = 0.05
    ds.SequenceOfUltrasoundRegions = DicomSequence([region])

    rng = _rng("US", "pixels", patient.patient_id, seed)
    # Grey speckle below a black banner; R = G = B as ultrasound scanners write it.
    dim = bytes(b >> 2 for b in range(256))
    grey = rng.randbytes(rows * columns).translate(dim)
    banner = 24 * columns
    grey = bytes(banner) + grey[banner:]
    pixels = bytearray(3 * rows * columns)
    for channel in range(3):
        pixels[channel::3] = grey
    display_name = " ".join(part for part in patient.name.split("^")[1:] if part)
    _burn_text(
        pixels,
        columns,
        [
            f"{patient.surname}, {display_name}",
            f"ID {patient.patient_id} DOB {patient.birth_date}",
            f"{_da(study.when)} {study.institution}",
        ],
        x0=2,
        y0=2,
    )
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.add_new(0x7FE00010, "OB", bytes(pixels))
    return ds


# ----------------------------------------------------------------------- phi_of

# The ground truth of which values of a generated file identify: written for this
# generator on purpose, independent of dicomveil.standard.keywords (which it checks).
_ID_KEYWORDS = frozenset(
    {
        "PatientID",
        "IssuerOfPatientID",
        "OtherPatientIDs",
        "AccessionNumber",
        "StudyID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "DeviceSerialNumber",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
        "AdmissionID",
        "MedicalRecordLocator",
        "StationAETitle",
    }
)
_TEXT_KEYWORDS = frozenset(
    {
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "ProtocolName",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "EthnicGroup",
        "Occupation",
        "MedicalAlerts",
        "Allergies",
        "MilitaryRank",
        "BranchOfService",
        "CountryOfResidence",
        "RegionOfResidence",
        "PatientReligiousPreference",
        "AdditionalPatientHistory",
        "ReasonForStudy",
        "ReasonForTheRequestedProcedure",
        "RequestingService",
        "PerformedLocation",
        "PerformedStationName",
        "ScheduledStationName",
        "OverlayLabel",
        "CurveLabel",
        "TextString",
    }
)
_TEXT_VRS = frozenset({"LO", "LT", "ST", "UT", "SH"})
_IMPLEMENTATION_CLASS_UID_TAG = 0x00020012


def _values(value: Any) -> Iterator[str]:
    items: Iterable[Any] = value if isinstance(value, MultiValue | list | tuple) else [value]
    for item in items:
        if item is None:
            continue
        text = str(item).strip()
        if text:
            yield text


def _collect(ds: Dataset, acc: dict[str, set[str]]) -> None:
    for elem in ds.iterall():
        if not isinstance(elem, DataElement) or elem.VR in ("SQ", "UN", "OB", "OW"):
            continue
        tag = elem.tag
        if tag.is_private_creator:
            continue
        vr = elem.VR
        if vr == "PN":
            for text in _values(elem.value):
                acc["names"].add(text)
                for group in text.split("="):
                    if group and group != text:
                        acc["names"].add(group)
                    for part in group.split("^"):
                        part = part.strip()
                        if len(part) >= 2 and part.rstrip(".").upper() not in _HONORIFICS:
                            acc["names"].add(part)
            continue
        if vr in ("DA", "DT"):
            for text in _values(elem.value):
                acc["dates"].add(text)
                if vr == "DT" and len(text) >= 8:
                    acc["dates"].add(text[:8])
            continue
        if vr == "UI":
            if tag == _IMPLEMENTATION_CLASS_UID_TAG:
                continue
            for text in _values(elem.value):
                if text not in UID_dictionary:
                    acc["uids"].add(text)
            continue
        if tag.is_private or vr not in _TEXT_VRS:
            continue
        keyword = keyword_for_tag(tag)
        if keyword in _ID_KEYWORDS or (keyword.endswith("ID") and vr in ("LO", "SH")):
            acc["ids"].update(_values(elem.value))
        elif keyword in _TEXT_KEYWORDS or "Description" in keyword or "Comments" in keyword:
            acc["texts"].update(_values(elem.value))


def phi_of(datasets: Iterable[Dataset]) -> PhiRecord:
    """Collect every identifying value of the datasets (all depths, private included).

    * ``names``: PN values, and their components of two or more characters;
    * ``ids``: values of identifier attributes (Patient ID, Issuer of Patient ID,
      Accession Number, Study ID, Requested Procedure ID, Device Serial Number, ...);
    * ``dates``: every DA and DT value;
    * ``texts``: free texts of description-like attributes (descriptions, comments,
      addresses, telephone numbers, institution and station names, labels);
    * ``uids``: every UI value that is not a well-known UID of the standard.
    """
    acc: dict[str, set[str]] = {k: set() for k in ("names", "ids", "dates", "texts", "uids")}
    for ds in datasets:
        meta = getattr(ds, "file_meta", None)
        if isinstance(meta, Dataset):
            _collect(meta, acc)
        _collect(ds, acc)
    return PhiRecord(**{k: frozenset(v) for k, v in acc.items()})


# ------------------------------------------------------------------------- write


def write_series(
    datasets: Iterable[FileDataset], folder: Path, *, names: str = "IM{index:04d}"
) -> list[Path]:
    """Write each dataset as a DICOM file (with preamble and file meta) into folder.

    File names come from ``names.format(index=i)`` with ``i`` counting from 1, so
    they carry no PHI.  Returns the paths written, in order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, ds in enumerate(datasets, start=1):
        name = names.format(index=index)
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"invalid file name {name!r} from pattern {names!r}")
        path = folder / name
        if path in paths:
            raise ValueError(f"pattern {names!r} gives the same name twice: {name!r}")
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
