"""Hand-built structured objects with PHI at every depth, for tests/test_cleaning.py:
a Comprehensive SR (PNAME, TEXT, DATE, TIME, DATETIME, UIDREF, NUM, CODE, IMAGE items,
nested four deep) and a Grayscale Softcopy Presentation State (text and graphic objects),
both about an image of :mod:`tests.support.synthetic`. Built with pydicom only; both pass
dciodvfy without errors as built."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from tests.support import synthetic

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _file(sop_class: str, sop_instance: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\x00" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    return ds


def _common(ds: Dataset, patient: synthetic.FakePatient, image: Dataset, modality: str) -> None:
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = image.StudyInstanceUID
    ds.StudyDate = image.StudyDate
    ds.StudyTime = image.StudyTime
    ds.ReferringPhysicianName = image.ReferringPhysicianName
    ds.StudyID = image.StudyID
    ds.AccessionNumber = image.AccessionNumber
    ds.StudyDescription = image.StudyDescription
    ds.Modality = modality
    ds.SeriesInstanceUID = image.SeriesInstanceUID + ".9"
    ds.SeriesNumber = 99
    ds.Manufacturer = "DICOMVEIL TEST"
    ds.InstitutionName = image.InstitutionName
    ds.InstanceNumber = 1


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _item(relationship: str, value_type: str, concept: Dataset, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([concept])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def comprehensive_sr(patient: synthetic.FakePatient, image: Dataset) -> FileDataset:
    """A Comprehensive SR about ``image`` whose tree holds PHI at every depth."""
    ds = _file(COMPREHENSIVE_SR, image.SOPInstanceUID + ".7")
    _common(ds, patient, image, "SR")
    ds.ContentDate = image.StudyDate
    ds.ContentTime = image.StudyTime
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = image.NameOfPhysiciansReadingStudy
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    observer.VerifyingOrganization = image.InstitutionName
    observer.VerificationDateTime = image.StudyDate + "120000"
    ds.VerifyingObserverSequence = Sequence([observer])
    reference = Dataset()
    reference.ReferencedSOPClassUID = image.SOPClassUID
    reference.ReferencedSOPInstanceUID = image.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = image.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([reference])
    evidence = Dataset()
    evidence.StudyInstanceUID = image.StudyInstanceUID
    evidence.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])

    surname = patient.surname.title()
    reader = image.NameOfPhysiciansReadingStudy
    study_date = image.StudyDate
    written = f"{study_date[6:8]}.{study_date[4:6]}.{study_date[:4]}"
    text = _item(
        "CONTAINS",
        "TEXT",
        _code("121071", "DCM", "Finding"),
        TextValue=f"12 mm lesion, left temporal. Discussed with Mr {surname} on {written}.",
    )
    measurement = Dataset()
    measurement.NumericValue = "12"
    measurement.MeasurementUnitsCodeSequence = Sequence([_code("mm", "UCUM", "millimeter")])
    number = _item(
        "CONTAINS",
        "NUM",
        _code("410668003", "SCT", "Length"),
        MeasuredValueSequence=Sequence([measurement]),
    )
    image_ref = Dataset()
    image_ref.ReferencedSOPClassUID = image.SOPClassUID
    image_ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    image_item = _item("INFERRED FROM", "IMAGE", _code("121112", "DCM", "Source of Measurement"))
    image_item.ReferencedSOPSequence = Sequence([image_ref])
    number.ContentSequence = Sequence([image_item])
    deep_text = _item(
        "HAS PROPERTIES",
        "TEXT",
        _code("121106", "DCM", "Comment"),
        TextValue=f"Measured by Dr. {str(reader).split('^')[0].title()}, MRN {patient.patient_id}",
    )
    image_item.ContentSequence = Sequence([deep_text])  # depth 4
    finding = _item(
        "CONTAINS",
        "CODE",
        _code("121071", "DCM", "Finding"),
        ConceptCodeSequence=Sequence([_code("108369006", "SCT", "Neoplasm")]),
    )
    findings = _item(
        "CONTAINS", "CONTAINER", _code("121070", "DCM", "Findings"), ContinuityOfContent="SEPARATE"
    )
    findings.ContentSequence = Sequence([text, number, finding])
    subject = _item(
        "HAS OBS CONTEXT", "PNAME", _code("121029", "DCM", "Subject Name"), PersonName=patient.name
    )
    observer_name = _item(
        "HAS OBS CONTEXT",
        "PNAME",
        _code("121008", "DCM", "Person Observer Name"),
        PersonName=reader,
    )
    date = _item("HAS OBS CONTEXT", "DATE", _code("111060", "DCM", "Study Date"), Date=study_date)
    time = _item(
        "HAS OBS CONTEXT", "TIME", _code("111061", "DCM", "Study Time"), Time=image.StudyTime
    )
    datetime = _item(
        "HAS OBS CONTEXT",
        "DATETIME",
        _code("111526", "DCM", "DateTime Started"),
        DateTime=study_date + image.StudyTime,
    )
    uid = _item(
        "HAS OBS CONTEXT",
        "UIDREF",
        _code("110180", "DCM", "Study Instance UID"),
        UID=image.StudyInstanceUID,
    )
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("126000", "DCM", "Imaging Measurement Report")])
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentSequence = Sequence([observer_name, subject, date, time, datetime, uid, findings])
    return ds


def gsps(patient: synthetic.FakePatient, image: Dataset) -> FileDataset:
    """A Grayscale Softcopy Presentation State with PHI in its text objects."""
    ds = _file(GSPS, image.SOPInstanceUID + ".8")
    _common(ds, patient, image, "PR")
    ds.Laterality = ""
    ds.PresentationCreationDate = image.StudyDate
    ds.PresentationCreationTime = image.StudyTime
    ds.ContentLabel = "ANNOTATION"
    ds.ContentDescription = "Key measurements"
    ds.ContentCreatorName = image.NameOfPhysiciansReadingStudy
    reference = Dataset()
    reference.ReferencedSOPClassUID = image.SOPClassUID
    reference.ReferencedSOPInstanceUID = image.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = image.SeriesInstanceUID
    series.ReferencedImageSequence = Sequence([reference])
    ds.ReferencedSeriesSequence = Sequence([series])
    area = Dataset()
    area.DisplayedAreaTopLeftHandCorner = [1, 1]
    area.DisplayedAreaBottomRightHandCorner = [int(image.Columns), int(image.Rows)]
    area.PresentationSizeMode = "SCALE TO FIT"
    area.PresentationPixelAspectRatio = [1, 1]
    ds.DisplayedAreaSelectionSequence = Sequence([area])
    ds.PresentationLUTShape = "IDENTITY"
    layer = Dataset()
    layer.GraphicLayer = "MEASUREMENTS"
    layer.GraphicLayerOrder = 1
    layer.GraphicLayerDescription = f"measurements for {patient.surname.title()}"
    ds.GraphicLayerSequence = Sequence([layer])
    text = Dataset()
    text.BoundingBoxAnnotationUnits = "PIXEL"
    text.UnformattedTextValue = (
        f"Lesion 12 mm - Dr. {str(image.ReferringPhysicianName).split('^')[0].title()}"
        f" {image.StudyDate}"
    )
    text.BoundingBoxTopLeftHandCorner = [2.0, 2.0]
    text.BoundingBoxBottomRightHandCorner = [12.0, 6.0]
    text.BoundingBoxTextHorizontalJustification = "LEFT"
    graphic = Dataset()
    graphic.GraphicAnnotationUnits = "PIXEL"
    graphic.GraphicDimensions = 2
    graphic.NumberOfGraphicPoints = 2
    graphic.GraphicData = [3.0, 3.0, 10.0, 10.0]
    graphic.GraphicType = "POLYLINE"
    graphic.GraphicFilled = "N"
    annotation = Dataset()
    annotation.GraphicLayer = "MEASUREMENTS"
    annotated = Dataset()
    annotated.ReferencedSOPClassUID = image.SOPClassUID
    annotated.ReferencedSOPInstanceUID = image.SOPInstanceUID
    annotation.ReferencedImageSequence = Sequence([annotated])
    annotation.TextObjectSequence = Sequence([text])
    annotation.GraphicObjectSequence = Sequence([graphic])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    return ds
