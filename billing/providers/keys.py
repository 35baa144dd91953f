"""Provider secrets encrypted at rest: Fernet (AES-128-CBC + HMAC) with a key derived from SECRET_KEY, so a
database dump alone does not give away an operator's payment account. Rotating SECRET_KEY makes stored
secrets unreadable: the operator enters them again (docs/payments.md)."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"cpms.payments.v1:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def secret_encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


def secret_decrypt(stored: str) -> str:
    """The plain secret, or "" when none is stored or it was encrypted under another SECRET_KEY."""
    if not stored:
        return ""
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken:
        return ""
