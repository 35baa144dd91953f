"""Charger passwords (security profiles 1 and 2: HTTP Basic auth).

RELIABILITY.md A8: checked with a fast salted hash (HMAC-SHA256 with a per-station random salt and the
server's secret as a pepper), not Django's PBKDF2 user hasher: a reconnect storm of thousands of chargers
must not cost half a second of CPU per handshake. Comparison is constant-time.
"""

import base64
import binascii
import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction

from cpms.errors import ValidationFailed
from stations.models import ChargingStation

ALGORITHM = "hmac-sha256"
# OCPP 1.6 security whitepaper: AuthorizationKey is 40 hex digits (20 bytes) on the wire as the
# password; 2.0.1 BasicAuthPassword: 16-40 characters. We accept 8-64 printable characters from
# operators, and 16-40 when a rotation to the charger is made (remote operations issue).
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 64


def password_hash_make(password: str, *, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    key = f"{settings.SECRET_KEY}:{salt}".encode()
    digest = hmac.new(key, password.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM}${salt}${digest}"


def password_hash_check(password: str, encoded: str) -> bool:
    """Constant-time check of `password` against a value made by password_hash_make."""
    try:
        algorithm, salt, _digest = encoded.split("$", 2)
    except ValueError:
        return False
    if algorithm != ALGORITHM:
        return False
    return hmac.compare_digest(password_hash_make(password, salt=salt), encoded)


def password_validate(password: str) -> None:
    if not (MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH):
        raise ValidationFailed(
            f"Charger password must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters long."
        )
    if not password.isprintable() or ":" in password:
        raise ValidationFailed("Charger password must be printable and must not contain ':'.")


@transaction.atomic
def station_password_set(*, station: ChargingStation, password: str) -> ChargingStation:
    password_validate(password)
    station.password_hash = password_hash_make(password)
    station.save(update_fields=["password_hash", "updated_at"])
    return station


def basic_auth_parse(header_value: bytes | None) -> tuple[str, str] | None:
    """(username, password) from an `Authorization: Basic ...` header, or None when absent/malformed."""
    if not header_value:
        return None
    try:
        scheme, _, encoded = header_value.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return None
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return username, password
