"""Charger passwords (security profiles 1 and 2: HTTP Basic auth).

docs/reliability.md case 8: checked with a fast salted hash (HMAC-SHA256 with a per-station random salt and
the server's secret as a pepper), not Django's PBKDF2 user hasher: a reconnect storm of thousands of chargers
must not cost half a second of CPU per handshake. Comparison is constant-time.
"""

import base64
import binascii
import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.db.models import F

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
    # surrogateescape: a password of raw octets (basic_auth_parse) hashes as those octets.
    digest = hmac.new(key, password.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
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
    """An operator sets the password by hand: it replaces the current one and any rotation in flight."""
    password_validate(password)
    station.password_hash = password_hash_make(password)
    station.pending_password_hash = ""
    station.pending_password_command = None
    station.save(
        update_fields=["password_hash", "pending_password_hash", "pending_password_command", "updated_at"]
    )
    return station


# --- rotation: a new password sent to the charger (docs/reliability.md case 5) ------------------
#
# 1. command_create records the command and, in the same transaction, the new password hashed as the
#    station's pending one (station_password_pending_set), before anything is sent.
# 2. The handshake accepts the current or the pending password (station_password_check); a charger that
#    connects with the pending one has taken it: it becomes the current one (station_password_promote).
# 3. The charger's answer, in the transaction that records it: Accepted (or RebootRequired) promotes the
#    pending password, anything else drops it (station_password_answered); so do a CALLERROR and a command
#    never delivered (station_password_withdrawn), while a timeout or a lost connection leave it pending.
# A crash between the charger's answer and our commit leaves both passwords valid until 2 or 3 happens:
# nobody is locked out, and the old one stops working as soon as the new one is confirmed.

ROTATION_SECURITY_COMPONENT = "SecurityCtrlr"
ROTATION_VARIABLE = "BasicAuthPassword"  # 2.0.1 / 2.1 SecurityCtrlr.BasicAuthPassword
ROTATION_KEY = "AuthorizationKey"  # 1.6 security whitepaper configuration key
# 1.6 security whitepaper, configuration key AuthorizationKey: "minimal 16 bytes ... 20 bytes maximum,
# represented as a string of up to 40 hexadecimal digits" (A00.FR.205). 2.0.1 A00.FR.205, SecurityCtrlr:
# BasicAuthPassword at least 16 characters; 40 is the smallest maxLimit a station may report.
AUTHORIZATION_KEY_HEX_DIGITS = (32, 40)
BASIC_AUTH_PASSWORD_LENGTH = (16, 40)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def is_password_item(item: object) -> bool:
    return (
        isinstance(item, dict)
        and (item.get("component") or {}).get("name") == ROTATION_SECURITY_COMPONENT
        and not (item.get("component") or {}).get("instance")
        and (item.get("variable") or {}).get("name") == ROTATION_VARIABLE
        and item.get("attributeType", "Actual") == "Actual"
    )


def rotation_password(*, action: str, request: object) -> str | None:
    """The new Basic-auth password a command's request gives the charger, if it gives one: 1.6
    ChangeConfiguration AuthorizationKey, 2.0.1/2.1 SetVariables SecurityCtrlr.BasicAuthPassword (Actual)."""
    if not isinstance(request, dict):
        return None
    if action == "ChangeConfiguration" and request.get("key") == ROTATION_KEY:
        value = request.get("value")
        return value if isinstance(value, str) else None
    if action == "SetVariables" and isinstance(request.get("setVariableData"), list):
        values = [item.get("attributeValue") for item in request["setVariableData"] if is_password_item(item)]
        if len(values) > 1:
            raise ValidationFailed("Send one new BasicAuthPassword at a time.")
        return values[0] if values and isinstance(values[0], str) else None
    return None


def rotation_password_validate(*, action: str, password: str) -> None:
    """What the charger must be able to use as its password, or ValidationFailed (nothing is sent)."""
    if action == "ChangeConfiguration":
        low, high = AUTHORIZATION_KEY_HEX_DIGITS
        if not (low <= len(password) <= high and len(password) % 2 == 0 and set(password) <= _HEX_DIGITS):
            raise ValidationFailed(
                f"AuthorizationKey must be {low // 2}-{high // 2} bytes written as {low}-{high} hexadecimal "
                "digits (OCPP 1.6 security whitepaper)."
            )
        return
    low, high = BASIC_AUTH_PASSWORD_LENGTH
    if not (low <= len(password) <= high) or not password.isprintable():
        raise ValidationFailed(f"BasicAuthPassword must be {low}-{high} printable characters (OCPP 2.0.1).")


def station_password_pending_set(*, station_id: int, command_id: int, action: str, password: str) -> None:
    """Keep `password` hashed as the station's pending password, carried by command `command_id` (caller
    holds the transaction that records the command). A rotation still in flight is replaced. A 1.6
    AuthorizationKey is kept as its lowercase hex digits (_password_forms)."""
    if action == "ChangeConfiguration":
        password = password.lower()
    ChargingStation.objects.filter(pk=station_id).update(
        pending_password_hash=password_hash_make(password), pending_password_command_id=command_id
    )


def station_password_answered(*, station_id: int, command_id: int, applied: bool) -> bool:
    """The charger answered the command carrying the pending password: `applied` makes it the station's
    password (the old one stops working), otherwise it is dropped (the old one keeps working). A rotation
    replaced by a later one, or already confirmed at a handshake, is left alone. True if something changed."""
    pending = ChargingStation.objects.filter(pk=station_id, pending_password_command_id=command_id).exclude(
        pending_password_hash=""
    )
    if applied:
        changed = pending.update(
            password_hash=F("pending_password_hash"), pending_password_hash="", pending_password_command=None
        )
    else:
        changed = pending.update(pending_password_hash="", pending_password_command=None)
    return changed == 1


def station_password_withdrawn(*, command_id: int) -> bool:
    """The command carrying a pending password failed in a way that shows the charger did not take it (never
    delivered, or a CALLERROR): the pending password is dropped. True if there was one."""
    return (
        ChargingStation.objects.filter(pending_password_command_id=command_id).update(
            pending_password_hash="", pending_password_command=None
        )
        == 1
    )


def _password_forms(password: str) -> list[str]:
    """The ways a charger may present a password: as is; and, for a 1.6 AuthorizationKey (stored as its
    lowercase hex digits), its digits in capitals, or its 16-20 raw octets, which the 1.6 security whitepaper
    makes the password ("hexadecimal represented"; chargers differ on whether they decode it)."""
    forms = [password]
    if password != password.lower() and set(password) <= _HEX_DIGITS:
        forms.append(password.lower())
    octets = password.encode("utf-8", "surrogateescape")
    if AUTHORIZATION_KEY_HEX_DIGITS[0] // 2 <= len(octets) <= AUTHORIZATION_KEY_HEX_DIGITS[1] // 2:
        forms.append(octets.hex())
    return forms


def station_password_check(*, password_hash: str, pending_password_hash: str, password: str) -> str | None:
    """Which of the station's passwords `password` is: "current", "pending" or None. Each comparison is
    constant-time; the other forms of the password (_password_forms) and the pending hash are tried only
    when the current one does not match as sent (a handful of HMACs, microseconds)."""
    forms = _password_forms(password)
    for encoded, which in ((password_hash, "current"), (pending_password_hash, "pending")):
        if encoded and any(password_hash_check(form, encoded) for form in forms):
            return which
    return None


def station_password_promote(*, station_id: int, pending_password_hash: str) -> bool:
    """The charger connected with its pending password: it has taken it, so it becomes the current one.
    Conditional on the pending hash still being the one checked (a newer rotation is left alone)."""
    return (
        ChargingStation.objects.filter(pk=station_id, pending_password_hash=pending_password_hash).update(
            password_hash=F("pending_password_hash"), pending_password_hash="", pending_password_command=None
        )
        == 1
    )


def basic_auth_parse(header_value: bytes | None) -> tuple[str, str] | None:
    """(username, password) from an `Authorization: Basic ...` header, or None when absent/malformed."""
    if not header_value:
        return None
    try:
        scheme, _, encoded = header_value.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return None
        # Octets that are not UTF-8 are kept (as surrogates): a 1.6 AuthorizationKey may be sent as its raw
        # bytes (station_password_check).
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8", "surrogateescape")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return username, password
