"""Project secrets: the key behind every pseudonym, UID and date offset.

A key file holds one line ``dicomveil-key-v1 <64 hex digits>`` and must be readable by its
owner only (mode 0600 or stricter). The key itself is never printed; its fingerprint is, so
users can tell which key a run used.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from dicomveil.errors import KeyFileError

_MAGIC = "dicomveil-key-v1"
_KEY_BYTES = 32


@dataclass(frozen=True)
class Key:
    """A secret of 32 bytes. ``repr`` shows the fingerprint only."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != _KEY_BYTES:
            raise KeyFileError(f"a key has {_KEY_BYTES} bytes, not {len(self.secret)}")

    @property
    def fingerprint(self) -> str:
        """A short public identifier of the key (not enough to recover it)."""
        digest = hmac.new(self.secret, b"dicomveil fingerprint", hashlib.sha256).hexdigest()
        return digest[:16]

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint})"

    @classmethod
    def generate(cls) -> Key:
        """A new random key (32 bytes from :mod:`secrets`)."""
        return cls(secrets.token_bytes(_KEY_BYTES))


def default_key_path() -> Path:
    """Where the user's default key lives (``$DICOMVEIL_KEY`` overrides it)."""
    env = os.environ.get("DICOMVEIL_KEY")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("dicomveil")) / "key"


def write_key(path: Path, key: Key | None = None, *, overwrite: bool = False) -> Key:
    """Write a key file readable by its owner only (mode 0600).

    Parameters
    ----------
    path : pathlib.Path
        Where to write it (parent folders are created).
    key : Key, optional
        The key to write (default: a new one).
    overwrite : bool
        Replace an existing file (default: refuse).

    Returns
    -------
    Key
        The key written.

    Raises
    ------
    KeyFileError
        When the file exists (and ``overwrite`` is false) or cannot be written.
    """
    key = key or Key.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: a key file already exists; not replacing it") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(f"{_MAGIC} {key.secret.hex()}\n")
    Path(path).chmod(0o600)
    return key


def read_key(path: Path) -> Key:
    """Read a key file.

    Parameters
    ----------
    path : pathlib.Path
        The key file.

    Returns
    -------
    Key
        The key.

    Raises
    ------
    KeyFileError
        When the file is missing, not a regular file, readable by others than its owner,
        or not a key.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} let others read the key; "
            f"run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="ascii").strip()
    except (UnicodeDecodeError, OSError) as exc:
        raise KeyFileError(f"{path}: cannot read the key file ({type(exc).__name__})") from None
    parts = text.split()
    if len(parts) != 2 or parts[0] != _MAGIC:
        raise KeyFileError(f"{path}: not a dicomveil key file (expected '{_MAGIC} <hex>')")
    try:
        secret = bytes.fromhex(parts[1])
    except ValueError:
        raise KeyFileError(f"{path}: the key is not hexadecimal") from None
    if len(secret) != _KEY_BYTES:
        raise KeyFileError(f"{path}: the key must have {_KEY_BYTES * 2} hex digits")
    return Key(secret)


def load_or_create_default_key() -> tuple[Key, Path, bool]:
    """The user's default key, created on first use. Returns (key, path, created)."""
    path = default_key_path()
    if path.exists():
        return read_key(path), path, False
    return write_key(path), path, True
