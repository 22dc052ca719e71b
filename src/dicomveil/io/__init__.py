"""Streaming DICOM I/O: read a file up to its pixel data, write it back with the pixel data
copied byte for byte, atomically."""

from dicomveil.io.read import (
    PixelSpan,
    SourceFile,
    failure_reason,
    iter_files,
    read_scanned,
    read_source,
    regular_files,
    special_file_reason,
)
from dicomveil.io.sniffing import Kind, sniff
from dicomveil.io.write import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION,
    TEMP_SUFFIX,
    OutputClaim,
    PixelSource,
    build_file_meta,
    claim_output,
    copy_file,
    fsync_dir,
    make_folder,
    remove_stale_temporaries,
    write_output,
)

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION",
    "TEMP_SUFFIX",
    "Kind",
    "OutputClaim",
    "PixelSource",
    "PixelSpan",
    "SourceFile",
    "build_file_meta",
    "claim_output",
    "copy_file",
    "failure_reason",
    "fsync_dir",
    "iter_files",
    "make_folder",
    "read_scanned",
    "read_source",
    "regular_files",
    "remove_stale_temporaries",
    "sniff",
    "special_file_reason",
    "write_output",
]
