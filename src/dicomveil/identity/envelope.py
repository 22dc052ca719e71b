"""Sealed envelopes for reversible de-identification (PS3.15 E.1.1, PS3.3 C.12.1.1.4.1).

The original values a profile changed or removed are kept in the file, encrypted for named
recipients, in the Encrypted Attributes Sequence (0400,0500): whoever holds a recipient's
private key (an honest broker) can restore them; everyone else sees the de-identified file.

The envelope is CMS (RFC 5652) in its authenticated form, **AuthEnvelopedData** (RFC 5083):
the content is encrypted with AES-256-GCM (RFC 5084) under a fresh random key, and that key is
encrypted for each recipient's RSA certificate with RSAES-OAEP, SHA-256 and MGF1-SHA-256 (RFC
8017, RFC 4055). GCM authenticates the content: an envelope changed by one bit is refused.
PS3.15 names EnvelopedData; its authenticated form is chosen so that tampering is detected
(with EnvelopedData and AES-CBC it is not), and ``openssl cms -decrypt`` opens both. The
structures are built with ``asn1crypto`` and the cryptography with ``cryptography``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dicomveil.errors import DicomveilError

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_NONCE_BYTES, _TAG_BYTES = 12, 16


class EnvelopeError(DicomveilError):
    """A certificate or key that cannot be used, or an envelope that cannot be opened."""


class _GcmParameters(core.Sequence):  # type: ignore[misc]
    """GCMParameters (RFC 5084): the nonce and the tag length."""

    _fields: ClassVar = [("nonce", core.OctetString), ("icv_len", core.Integer, {"default": 12})]


@dataclass(frozen=True)
class Recipient:
    """A recipient of sealed envelopes: an X.509 certificate with an RSA public key.

    Attributes
    ----------
    certificate : cryptography.x509.Certificate
        The certificate.
    """

    certificate: x509.Certificate

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        """Pickled as its DER bytes (for worker processes and cluster tasks)."""
        return (Recipient.from_der, (self.der,))

    @classmethod
    def from_der(cls, der: bytes) -> Recipient:
        """A recipient from its certificate's DER bytes."""
        return cls(x509.load_der_x509_certificate(der))

    @property
    def der(self) -> bytes:
        """The certificate, DER-encoded."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def name(self) -> str:
        """The certificate's subject, as RFC 4514 text."""
        return self.certificate.subject.rfc4514_string()

    def _rid(self) -> cms.RecipientIdentifier:
        issued = cms.IssuerAndSerialNumber(
            {
                "issuer": _asn1_certificate(self.certificate)["tbs_certificate"]["issuer"],
                "serial_number": self.certificate.serial_number,
            }
        )
        return cms.RecipientIdentifier(name="issuer_and_serial_number", value=issued)


def _asn1_certificate(certificate: x509.Certificate) -> cms.Certificate:
    return cms.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def load_recipient(path: Path) -> Recipient:
    """A recipient from a PEM (or DER) certificate file.

    Parameters
    ----------
    path : pathlib.Path
        The certificate.

    Returns
    -------
    Recipient
        The recipient.

    Raises
    ------
    EnvelopeError
        The file cannot be read, is no certificate, or its key is not RSA of 2048 bits or
        more.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnvelopeError(f"{path}: cannot read the certificate ({exc.strerror})") from None
    try:
        certificate = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        raise EnvelopeError(f"{path}: not an X.509 certificate (PEM or DER)") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise EnvelopeError(f"{path}: the certificate's key must be RSA of 2048 bits or more")
    return Recipient(certificate)


def load_private_key(path: Path, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """An RSA private key from a PEM (or DER) file.

    Parameters
    ----------
    path : pathlib.Path
        The key file.
    password : bytes, optional
        Its pass phrase, if it is encrypted.

    Returns
    -------
    cryptography.hazmat.primitives.asymmetric.rsa.RSAPrivateKey
        The key.

    Raises
    ------
    EnvelopeError
        The file cannot be read, or holds no RSA private key (or the pass phrase is wrong).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnvelopeError(f"{path}: cannot read the private key ({exc.strerror})") from None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError):
        raise EnvelopeError(
            f"{path}: not a private key, or its pass phrase is missing or wrong"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise EnvelopeError(f"{path}: the private key must be RSA")
    return key


def seal(content: bytes, recipients: Sequence[Recipient]) -> bytes:
    """Encrypt ``content`` for every recipient: a DER CMS ContentInfo of AuthEnvelopedData.

    Parameters
    ----------
    content : bytes
        What to encrypt.
    recipients : sequence of Recipient
        Who may open it (at least one).

    Returns
    -------
    bytes
        The envelope.

    Raises
    ------
    EnvelopeError
        No recipient given.
    """
    if not recipients:
        raise EnvelopeError("a sealed envelope needs at least one recipient certificate")
    key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, content, None)
    ciphertext, tag = sealed[:-_TAG_BYTES], sealed[-_TAG_BYTES:]
    oaep = algos.RSAESOAEPParams(
        {
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        }
    )
    infos = []
    for recipient in recipients:
        public = recipient.certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        ktri = cms.KeyTransRecipientInfo(
            {
                "version": "v0",
                "rid": recipient._rid(),
                "key_encryption_algorithm": {"algorithm": "rsaes_oaep", "parameters": oaep},
                "encrypted_key": public.encrypt(key, _OAEP),
            }
        )
        infos.append(cms.RecipientInfo(name="ktri", value=ktri))
    algorithm = algos.EncryptionAlgorithm(
        {
            "algorithm": "aes256_gcm",
            "parameters": _GcmParameters({"nonce": nonce, "icv_len": _TAG_BYTES}),
        }
    )
    enveloped = cms.AuthEnvelopedData(
        {
            "version": "v0",
            "recipient_infos": infos,
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": algorithm,
                "encrypted_content": ciphertext,
            },
            "mac": tag,
        }
    )
    info = cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": enveloped})
    return bytes(info.dump())


def open_envelope(
    envelope: bytes, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate | None = None
) -> bytes:
    """Decrypt an envelope of :func:`seal` with a recipient's private key.

    Parameters
    ----------
    envelope : bytes
        The DER ContentInfo.
    private_key : RSAPrivateKey
        The recipient's key.
    certificate : cryptography.x509.Certificate, optional
        The recipient's certificate: its entry is picked by issuer and serial number; without
        it, every entry is tried.

    Returns
    -------
    bytes
        The content.

    Raises
    ------
    EnvelopeError
        Not such an envelope, no entry for this key, or the content fails authentication
        (it was changed).
    """
    try:
        info = cms.ContentInfo.load(envelope)
        if info["content_type"].native != "authenticated_enveloped_data":
            raise EnvelopeError("not a CMS AuthEnvelopedData envelope")
        data = info["content"]
        content_info = data["auth_encrypted_content_info"]
        algorithm = content_info["content_encryption_algorithm"]
        if algorithm["algorithm"].native != "aes256_gcm":
            raise EnvelopeError(f"unsupported content encryption {algorithm['algorithm'].native}")
        params = _GcmParameters.load(algorithm["parameters"].dump())
        nonce, ciphertext = params["nonce"].native, content_info["encrypted_content"].native
        tag = data["mac"].native
        infos = [ri.chosen for ri in data["recipient_infos"] if ri.name == "ktri"]
    except EnvelopeError:
        raise
    except (ValueError, KeyError, TypeError):
        raise EnvelopeError("the envelope is damaged: it does not parse as CMS") from None
    wanted = None
    if certificate is not None:
        wanted = (
            _asn1_certificate(certificate)["tbs_certificate"]["issuer"].dump(),
            certificate.serial_number,
        )
    key = None
    for ktri in infos:
        rid = ktri["rid"]
        if wanted is not None and rid.name == "issuer_and_serial_number":
            issued = rid.chosen
            if (issued["issuer"].dump(), issued["serial_number"].native) != wanted:
                continue
        try:
            key = private_key.decrypt(ktri["encrypted_key"].native, _OAEP)
            break
        except ValueError:
            continue
    if key is None:
        raise EnvelopeError("the envelope holds no entry this private key opens")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext + tag, None)
    except (InvalidTag, ValueError):
        raise EnvelopeError(
            "the envelope fails authentication: it was changed after it was sealed"
        ) from None
