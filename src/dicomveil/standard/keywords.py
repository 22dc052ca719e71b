"""Attributes known to hold identifiers, by keyword: what the free-text cleaner collects from
a file (:mod:`dicomveil.cleaners.text.identifiers`) and what verify may look for in an output.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ID_KEYWORDS", "OBJECT_ID_KEYWORDS"]

# The IDs of a patient, a visit, an order, a procedure step or a trial subject.
ID_KEYWORDS: Final = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "AccessionNumber",
        "StudyID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "AdmissionID",
        "ServiceEpisodeID",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberProcedure",
        "FillerOrderNumberProcedure",
        "MedicalRecordLocator",
        "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID",
    }
)

# Public attributes named "...ID" that Table E.1-1 does not list and that identify a thing,
# not a person: an image's label, a stack, RT and brachytherapy accessories, a grid, a
# respiratory signal source, a message set (their definitions in PS3.3 and PS3.6 2026d).
# An element whose keyword ends in "ID" is otherwise taken to hold an identifier; these
# hold names that equipment or users give things ("WHOLE BODY_E", "WEDGE30").
OBJECT_ID_KEYWORDS: Final = frozenset(
    {
        "ImageID",
        "StackID",
        "GridID",
        "RespiratorySignalSourceID",
        "MessageSetID",
        "EndMessageID",
        "FluenceModeID",
        "WedgeID",
        "BolusID",
        "MaterialID",
        "CompensatorID",
        "CompensatorTrayID",
        "BlockTrayID",
        "ApplicatorID",
        "SourceModelID",
        "BrachyAccessoryDeviceID",
        "AfterloaderChannelID",
        "SourceApplicatorID",
        "ChannelShieldID",
        "SnoutID",
        "RangeShifterID",
        "LateralSpreadingDeviceID",
        "RangeModulatorID",
        "BeamCurrentModulationID",
        "PatientSupportID",
        "ScanSpotTuneID",
        "GeneralAccessoryID",
    }
)
