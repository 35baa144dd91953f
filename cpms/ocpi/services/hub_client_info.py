"""HubClientInfo, Receiver side (OCPI 2.2.1 section 17): a hub tells us which parties it routes for and
whether they are connected (ClientInfo). Only a partner with the HUB role may push it; what it pushes is
kept per hub (`OcpiClientInfo`), one row per party and role, and served back on GET."""

from typing import Any

from django.db import transaction

from cpms.ocpi.enums import Role
from cpms.ocpi.models import OcpiClientInfo, OcpiPartner
from cpms.ocpi.protocol import (
    COUNTRY_CODE,
    DATETIME,
    INVALID_PARAMETERS,
    PARTY_ID,
    OcpiError,
    format_datetime,
    parse_datetime,
    schema_validator,
)

CONNECTION_STATUSES = ("CONNECTED", "OFFLINE", "PLANNED", "SUSPENDED")

validate_client_info = schema_validator(
    {
        "type": "object",
        "required": ["party_id", "country_code", "role", "status", "last_updated"],
        "properties": {
            "party_id": PARTY_ID,
            "country_code": COUNTRY_CODE,
            "role": {"enum": list(Role.values)},
            "status": {"enum": list(CONNECTION_STATUSES)},
            "last_updated": DATETIME,
        },
    }
)


def client_info_data(info: OcpiClientInfo) -> dict[str, Any]:
    return {
        "party_id": info.party_id,
        "country_code": info.country_code,
        "role": info.role,
        "status": info.status,
        "last_updated": format_datetime(info.last_updated),
    }


def client_info_get(*, partner: OcpiPartner, country_code: str, party_id: str) -> OcpiClientInfo | None:
    """What the hub last told us of this party (its most recently updated role)."""
    return (
        OcpiClientInfo.objects.filter(
            partner=partner, country_code=country_code.upper(), party_id=party_id.upper()
        )
        .order_by("-last_updated", "-pk")
        .first()
    )


def client_info_put(*, partner: OcpiPartner, country_code: str, party_id: str, data: Any) -> OcpiClientInfo:
    """Stores a ClientInfo the hub pushed for the party in the URL. A push older than the one stored
    (last_updated) changes nothing: pushes may arrive out of order."""
    validate_client_info(data)
    country_code, party_id = country_code.upper(), party_id.upper()
    if (data["country_code"].upper(), data["party_id"].upper()) != (country_code, party_id):
        raise OcpiError(
            "country_code and party_id of the body differ from the URL's.", status_code=INVALID_PARAMETERS
        )
    last_updated = parse_datetime(data["last_updated"], field="last_updated")
    key = {"partner": partner, "country_code": country_code, "party_id": party_id, "role": data["role"]}
    with transaction.atomic():
        info, created = OcpiClientInfo.objects.select_for_update().get_or_create(
            **key, defaults={"status": data["status"], "last_updated": last_updated}
        )
        if not created and last_updated >= info.last_updated:
            info.status = data["status"]
            info.last_updated = last_updated
            info.save(update_fields=["status", "last_updated"])
    return info
