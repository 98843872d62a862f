"""Encryption of stored secrets (mailbox passwords).

Fernet keys are derived from SECRET_KEY with HKDF-SHA256 and a purpose-bound info
string; keys derived from SECRET_KEY_FALLBACKS still decrypt, so SECRET_KEY can be
rotated and `flask crypto reencrypt` moves every value to the current key.
"""
import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

CREDENTIALS_INFO = b"myportal/imap-credentials/v1"


class DecryptionError(Exception):
    pass


def derive_key(secret: str, info: bytes = CREDENTIALS_INFO) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        secret.encode("utf-8")
    )
    return base64.urlsafe_b64encode(raw)


def _fernet(config=None) -> MultiFernet:
    config = config or current_app.config
    secrets = [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([Fernet(derive_key(secret)) for secret in secrets])


def encrypt(plaintext: str, config=None) -> str:
    return _fernet(config).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str, config=None) -> str:
    try:
        return _fernet(config).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError) as exc:
        raise DecryptionError(
            "Stored credentials cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS"
        ) from exc


def reencrypt(token: str, config=None) -> str:
    """Re-encrypt under the current key (raises DecryptionError if no key fits)."""
    try:
        return _fernet(config).rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError) as exc:
        raise DecryptionError("Stored credentials cannot be decrypted") from exc
