"""The options of the PS3.15 Basic Application Level Confidentiality Profile, and ours.

Each option of PS3.15 Table E.1-1 is a column of that table; its CID 7050 code
(PS3.16 CID 7050 "De-identification Method") is recorded in the output's
De-identification Method Code Sequence. dcm4chee-arc's option names are accepted as aliases
so its users can reuse their configuration.
"""

from __future__ import annotations

from enum import StrEnum

from dicomveil.errors import ProfileError


class Option(StrEnum):
    """A de-identification option, named as on dicomveil's command line."""

    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_UIDS = "retain-uids"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    RETAIN_LONG_FULL_DATES = "retain-long-full-dates"
    RETAIN_LONG_MODIFIED_DATES = "retain-long-modified-dates"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"
    RETAIN_PATIENT_ID_HASH = "retain-patient-id-hash"
    RETAIN_TCIA_PRIVATE = "retain-tcia-private"
    RETAIN_ACQUISITION_PARAMETERS = "retain-acquisition-parameters"
    CLEAN_PIXEL_DATA = "clean-pixel-data"
    REVERSIBLE = "reversible"

    @property
    def column(self) -> str | None:
        """The option's column in PS3.15 Table E.1-1, or None for options of our own."""
        return _COLUMNS.get(self)

    @property
    def code(self) -> tuple[str, str] | None:
        """The CID 7050 (code value, code meaning) recorded when the option is applied."""
        return _CODES.get(self)

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @classmethod
    def parse(cls, name: str | Option) -> Option:
        """An option by any of its names.

        Parameters
        ----------
        name : str or Option
            dicomveil's name (``retain-uids``), its underscore form, the PS3.15 option
            name, or dcm4chee-arc's.

        Returns
        -------
        Option
            The option.

        Raises
        ------
        ProfileError
            When no option has that name.
        """
        if isinstance(name, Option):
            return name
        key = name.strip()
        alias = _ALIASES.get(key) or _ALIASES.get(key.lower())
        if alias is not None:
            return alias
        normalised = key.lower().replace("_", "-")
        for option in cls:
            if option.value == normalised:
                return option
        known = ", ".join(o.value for o in cls)
        raise ProfileError(f"unknown option {name!r} (known: {known})")


_COLUMNS: dict[Option, str] = {
    Option.RETAIN_SAFE_PRIVATE: "retain_safe_private",
    Option.RETAIN_UIDS: "retain_uids",
    Option.RETAIN_DEVICE_IDENTITY: "retain_device_identity",
    Option.RETAIN_INSTITUTION_IDENTITY: "retain_institution_identity",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "retain_patient_characteristics",
    Option.RETAIN_LONG_FULL_DATES: "retain_long_full_dates",
    Option.RETAIN_LONG_MODIFIED_DATES: "retain_long_modified_dates",
    Option.CLEAN_DESCRIPTORS: "clean_descriptors",
    Option.CLEAN_STRUCTURED_CONTENT: "clean_structured_content",
    Option.CLEAN_GRAPHICS: "clean_graphics",
}

# PS3.16 CID 7050 De-identification Method.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
_CODES: dict[Option, tuple[str, str]] = {
    Option.CLEAN_PIXEL_DATA: ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONG_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_LONG_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}

_DESCRIPTIONS: dict[Option, str] = {
    Option.RETAIN_SAFE_PRIVATE: "keep private elements on the PS3.15 safe-private list",
    Option.RETAIN_UIDS: "keep original UIDs",
    Option.RETAIN_DEVICE_IDENTITY: "keep station names, serial numbers and device identifiers",
    Option.RETAIN_INSTITUTION_IDENTITY: "keep institution names and addresses",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "keep sex, age (capped at 90Y), size, weight",
    Option.RETAIN_LONG_FULL_DATES: "keep all dates and times unchanged",
    Option.RETAIN_LONG_MODIFIED_DATES: "shift all dates by one keyed offset per patient",
    Option.CLEAN_DESCRIPTORS: "keep descriptions, comments and histories; identifying spans "
    "become [NAME], [DATE], ...",
    Option.CLEAN_STRUCTURED_CONTENT: "keep SR content trees: names, texts and dates cleaned, codes "
    "and measurements kept",
    Option.CLEAN_GRAPHICS: "keep overlays and graphic annotations; their texts cleaned",
    Option.RETAIN_PATIENT_ID_HASH: "PatientID and IssuerOfPatientID become keyed hashes "
    "(dcm4chee RetainPatientIDHashOption)",
    Option.RETAIN_TCIA_PRIVATE: "also keep private elements TCIA's knowledge base marks keep "
    "(dicomveil extension)",
    Option.RETAIN_ACQUISITION_PARAMETERS: "keep the vendor private elements neuroimaging "
    "converters read (Siemens, GE, Philips, UIH), cleaned: Siemens CSA headers and Phoenix "
    "protocol filtered to parameters (dicomveil extension)",
    Option.REVERSIBLE: "seal every original value the profile changes or removes in the file, "
    "encrypted for named recipients (--recipient CERT.pem; PS3.15 E.1.1 Encrypted Attributes "
    "Sequence): `dicomveil reidentify` with a recipient's private key restores them",
    Option.CLEAN_PIXEL_DATA: "find burned-in text (header signals, rectangle rules, OCR of every "
    "frame) and black it out in the pixels; withhold what cannot be redacted",
}

_ALIASES: dict[str, Option] = {
    "RetainUIDsOption": Option.RETAIN_UIDS,
    "RetainLongitudinalTemporalInformationFullDatesOption": Option.RETAIN_LONG_FULL_DATES,
    "RetainLongitudinalTemporalInformationModifiedDatesOption": Option.RETAIN_LONG_MODIFIED_DATES,
    "RetainDeviceIdentityOption": Option.RETAIN_DEVICE_IDENTITY,
    "RetainInstitutionIdentityOption": Option.RETAIN_INSTITUTION_IDENTITY,
    "RetainPatientIDHashOption": Option.RETAIN_PATIENT_ID_HASH,
    "RetainSafePrivateOption": Option.RETAIN_SAFE_PRIVATE,
    "RetainPatientCharacteristicsOption": Option.RETAIN_PATIENT_CHARACTERISTICS,
    "CleanDescriptorsOption": Option.CLEAN_DESCRIPTORS,
    "CleanStructuredContentOption": Option.CLEAN_STRUCTURED_CONTENT,
    "CleanGraphicsOption": Option.CLEAN_GRAPHICS,
    "CleanPixelDataOption": Option.CLEAN_PIXEL_DATA,
}

# Options whose K/C columns both touch the same attributes and cannot be combined.
EXCLUSIVE: tuple[frozenset[Option], ...] = (
    frozenset({Option.RETAIN_LONG_FULL_DATES, Option.RETAIN_LONG_MODIFIED_DATES}),
)
