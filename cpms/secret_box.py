"""Secrets the platform must use in plain text later (a payment provider's key, the token we call a roaming
partner with) encrypted at rest: Fernet (AES-128-CBC + HMAC) with a key derived from SECRET_KEY and a purpose,
so that a database dump alone gives nothing away. Rotating SECRET_KEY makes stored secrets unreadable: the
operator enters them again (payments) or the credentials are exchanged again (roaming)."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet(purpose: str) -> Fernet:
    digest = hashlib.sha256(purpose.encode() + b":" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def secret_encrypt(plain: str, *, purpose: str) -> str:
    return _fernet(purpose).encrypt(plain.encode()).decode() if plain else ""


def secret_decrypt(stored: str, *, purpose: str) -> str:
    """The plain secret, or "" when none is stored or it was encrypted under another SECRET_KEY."""
    if not stored:
        return ""
    try:
        return _fernet(purpose).decrypt(stored.encode()).decode()
    except InvalidToken:
        return ""
