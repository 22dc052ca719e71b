"""The DICOM standard as data: PS3.15 Table E.1-1 and the other generated tables, the
action codes, the options, the conditional partners of attributes."""
