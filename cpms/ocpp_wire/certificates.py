"""Certificate management on the wire: the calls of the 2.0.1 A02/A03/M03-M05 use cases and of the 1.6
Improved Security whitepaper (edition 3), and the names each version gives certificate kinds.

Our names are 2.0.1's (stations.enums.CertificateUse). The 1.6 whitepaper calls the CSMS root
"CentralSystemRootCertificate", asks for a new station certificate with ExtendedTriggerMessage
"SignChargePointCertificate" and has no V2G certificates at all. Every builder ends with `call_checked`.
"""

from typing import Any

from cpms.errors import ValidationFailed
from cpms.ocpp_wire.calls import Call, call_checked, version_checked

CHARGING_STATION = "ChargingStationCertificate"
V2G = "V2GCertificate"
CSMS_ROOT = "CSMSRootCertificate"

# Our (2.0.1) name -> the 1.6 whitepaper's CertificateUseEnumType.
_USE_16 = {
    CSMS_ROOT: "CentralSystemRootCertificate",
    "ManufacturerRootCertificate": "ManufacturerRootCertificate",
}
_USE_FROM_16 = {wire: ours for ours, wire in _USE_16.items()}

# 2.0.1 InstallCertificateUseEnumType.
INSTALLABLE_201 = ("V2GRootCertificate", "MORootCertificate", CSMS_ROOT, "ManufacturerRootCertificate")


def use_from_wire(version: str, name: str) -> str:
    """A certificate kind as a station of `version` names it -> ours (CertificateUse values)."""
    if version_checked(version) == "1.6":
        return _USE_FROM_16.get(name, name)
    return name


def certificate_signed(version: str, *, chain_pem: str, certificate_type: str = CHARGING_STATION) -> Call:
    """CertificateSigned: the signed certificate, leaf first, then the sub-CAs (the 2.0.1 schema: "the order
    of the bundle should follow the certificate chain, starting from the leaf"). 2.0.1 names the type it answers (required when the request named one); 1.6 has one kind only."""
    if version_checked(version) == "1.6":
        if certificate_type != CHARGING_STATION:
            raise ValidationFailed("OCPP 1.6 signs charge point certificates only.")
        return call_checked(version, Call("CertificateSigned", {"certificateChain": chain_pem}))
    payload = {"certificateChain": chain_pem, "certificateType": certificate_type}
    return call_checked(version, Call("CertificateSigned", payload))


def install_certificate(version: str, *, use: str, certificate_pem: str) -> Call:
    """InstallCertificate of a root (CSMS, manufacturer; 2.0.1 also V2G and MO roots)."""
    if version_checked(version) == "1.6":
        if use not in _USE_16:
            raise ValidationFailed(f"OCPP 1.6 cannot install a {use}; it installs {', '.join(_USE_16)}.")
        payload: dict[str, Any] = {"certificateType": _USE_16[use], "certificate": certificate_pem}
        return call_checked(version, Call("InstallCertificate", payload))
    if use not in INSTALLABLE_201:
        raise ValidationFailed(f"InstallCertificate takes {', '.join(INSTALLABLE_201)}, not {use}.")
    return call_checked(
        version, Call("InstallCertificate", {"certificateType": use, "certificate": certificate_pem})
    )


def sign_certificate_trigger(version: str, *, certificate_type: str = CHARGING_STATION) -> Call:
    """Ask the station for a new key pair and a SignCertificate: 2.0.1 TriggerMessage
    SignChargingStationCertificate / SignV2GCertificate (A02.FR.01, A03); 1.6 ExtendedTriggerMessage
    SignChargePointCertificate (whitepaper A02)."""
    if version_checked(version) == "1.6":
        if certificate_type != CHARGING_STATION:
            raise ValidationFailed("OCPP 1.6 has no V2G certificates.")
        return call_checked(
            version, Call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
        )
    messages = {CHARGING_STATION: "SignChargingStationCertificate", V2G: "SignV2GCertificate"}
    if certificate_type not in messages:
        raise ValidationFailed(f"No trigger signs a {certificate_type}.")
    return call_checked(version, Call("TriggerMessage", {"requestedMessage": messages[certificate_type]}))


def get_installed_certificate_ids(version: str, *, use: str | None = None) -> Call:
    """GetInstalledCertificateIds: 1.6 asks for one kind (required); 2.0.1 for some or all."""
    if version_checked(version) == "1.6":
        wire = _USE_16.get(use or CSMS_ROOT)
        if wire is None:
            raise ValidationFailed(f"OCPP 1.6 lists {', '.join(_USE_16)} only.")
        return call_checked(version, Call("GetInstalledCertificateIds", {"certificateType": wire}))
    payload: dict[str, Any] = {"certificateType": [use]} if use else {}
    return call_checked(version, Call("GetInstalledCertificateIds", payload))


def installed_hash_data(
    version: str, request: dict[str, Any], response: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(our use, CertificateHashData) of each certificate a GetInstalledCertificateIds answer lists; the
    2.0.1 chain's child certificates (a V2GCertificateChain's sub-CAs) are left out: the inventory names the
    station's certificates, their issuers are named by their hashes."""
    if version_checked(version) == "1.6":
        use = use_from_wire(version, request.get("certificateType", ""))
        return [(use, data) for data in response.get("certificateHashData") or []]
    return [
        (item["certificateType"], item["certificateHashData"])
        for item in response.get("certificateHashDataChain") or []
    ]
