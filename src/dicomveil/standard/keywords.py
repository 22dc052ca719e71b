"""Attributes known to hold identifiers, by keyword: what the free-text cleaner collects from
a file (:mod:`dicomveil.cleaners.text.identifiers`) and what verify may look for in an output.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ID_KEYWORDS"]

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
