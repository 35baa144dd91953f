from django.db import models


class OcppVersion(models.TextChoices):
    V16 = "ocpp1.6", "OCPP 1.6J"
    V201 = "ocpp2.0.1", "OCPP 2.0.1"
    V21 = "ocpp2.1", "OCPP 2.1"


class RegistrationStatus(models.TextChoices):
    ACCEPTED = "Accepted", "Accepted"
    PENDING = "Pending", "Pending"
    REJECTED = "Rejected", "Rejected"


class ConnectorStatus(models.TextChoices):
    """One vocabulary for both versions; 1.6 statuses that 2.0.1 lacks are kept as they are."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EVSE = "SuspendedEVSE"
    SUSPENDED_EV = "SuspendedEV"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    UNKNOWN = "Unknown"


class MessageDirection(models.TextChoices):
    IN = "in", "Charger to CSMS"
    OUT = "out", "CSMS to charger"


class StationEventKind(models.TextChoices):
    DATA_TRANSFER = "data_transfer"
    FIRMWARE_STATUS = "firmware_status"
    DIAGNOSTICS_STATUS = "diagnostics_status"
    LOG_STATUS = "log_status"
    CERTIFICATE_REQUEST = "certificate_request"
    PUBLISH_FIRMWARE_STATUS = "publish_firmware_status"
    NOTIFY_EVENT = "notify_event"
    MONITORING_REPORT = "monitoring_report"
    RESERVATION_STATUS = "reservation_status"
    CHARGING_LIMIT = "charging_limit"
    CHARGING_PROFILES_REPORT = "charging_profiles_report"
    EV_CHARGING_NEEDS = "ev_charging_needs"
    EV_CHARGING_SCHEDULE = "ev_charging_schedule"
    DISPLAY_MESSAGES = "display_messages"
    CUSTOMER_INFORMATION = "customer_information"
    DEVICE_REPORT = "device_report"
    BOOT = "boot"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class SecurityEventKind(models.TextChoices):
    UNKNOWN_IDENTITY = "unknown_identity"
    AUTH_FAILED = "auth_failed"
    PROTOCOL_VIOLATION = "protocol_violation"
    CHARGER_REPORTED = "charger_reported"
    # A station connecting below its configured security profile, or below one it was once seen at.
    PROFILE_DOWNGRADE = "profile_downgrade"
    # A client certificate refused at the handshake (untrusted, expired, revoked, wrong CN or O).
    CERTIFICATE_REFUSED = "certificate_refused"
    # A certificate signed, installed, renewed or revoked (the certificate lifecycle's audit trail).
    CERTIFICATE_LIFECYCLE = "certificate_lifecycle"


class CertificateUse(models.TextChoices):
    """What a certificate is for: OCPP 2.0.1 GetCertificateIdUseEnumType / the 1.6 security whitepaper's
    CertificateUse, and the charging station's own certificate (CertificateSigningUseEnumType)."""

    CSMS_ROOT = "CSMSRootCertificate"
    MANUFACTURER_ROOT = "ManufacturerRootCertificate"
    V2G_ROOT = "V2GRootCertificate"
    MO_ROOT = "MORootCertificate"
    CHARGING_STATION = "ChargingStationCertificate"
    V2G = "V2GCertificate"
    V2G_CHAIN = "V2GCertificateChain"


class CertificateAuthorityPurpose(models.TextChoices):
    # Signs charging-station certificates (SignCertificate) and is what profile-3 client certificates chain to.
    CHARGING_STATION = "charging_station", "Charging-station CA"
    # The root our server certificate chains to: installed on stations as their CSMSRootCertificate.
    CSMS_ROOT = "csms_root", "CSMS root"
    # The CPO sub-CA of the V2G PKI (signs SECC certificates), usually external.
    V2G = "v2g", "V2G (SECC) sub-CA"
    # Mobility operators' roots: contract certificates (Plug&Charge) chain to these.
    MO_ROOT = "mo_root", "Mobility operator root"


class CertificateSource(models.TextChoices):
    ISSUED = "issued", "Signed by us"
    REPORTED = "reported", "Reported by the station"
    INSTALLED = "installed", "Installed by us"


class CertificateStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUPERSEDED = "superseded", "Replaced by a newer one"
    REVOKED = "revoked", "Revoked"


class ConnectorType(models.TextChoices):
    TYPE2 = "cType2", "Type 2 socket"
    TYPE2_CABLE = "cType2Cable", "Type 2 cable"
    CCS2 = "cCCS2", "CCS2"
    CCS1 = "cCCS1", "CCS1"
    CHADEMO = "cChaoJi", "CHAdeMO / ChaoJi"
    TYPE1 = "cType1", "Type 1"
    SCHUKO = "sSchuko", "Schuko"
    UNKNOWN = "Unknown", "Unknown"


class CommandStatus(models.TextChoices):
    """Life of a CSMS->charger call. `pending` is written before anything is sent (the record is the
    outbox); `sent` once a server process holding the connection claimed it and wrote the frame."""

    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    ANSWERED = "answered", "Answered"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"


class CommandSource(models.TextChoices):
    API = "api", "API"
    ADMIN = "admin", "Admin"
    PORTAL = "portal", "Portal"
    JOB = "job", "Bulk job"
    SYSTEM = "system", "System"


class JobKind(models.TextChoices):
    CONFIGURATION = "configuration", "Configuration template"
    FIRMWARE = "firmware", "Firmware update"
    COMMAND = "command", "Bulk command"
    READ_CONFIGURATION = "read_configuration", "Read configuration"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class JobTargetStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    OK = "ok", "OK"
    FAILED = "failed", "Failed"


class UploadKind(models.TextChoices):
    DIAGNOSTICS = "diagnostics", "Diagnostics (1.6 GetDiagnostics)"
    LOG = "log", "Log (GetLog)"


class IncidentKind(models.TextChoices):
    """What opened an incident."""

    FAULT = "fault", "Fault reported"  # a connector or station reported Faulted or an error code
    OFFLINE = "offline", "Offline"  # the station lost its connection and did not come back in time
    EVENT = "event", "Problem event"  # an OCPP 2.0.1 NotifyEvent with a problem or alerting trigger
