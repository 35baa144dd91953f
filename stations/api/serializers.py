from rest_framework import serializers

from cpms.api import StrictInputSerializer
from stations.enums import (
    ConnectorStatus,
    OcppVersion,
    RegistrationStatus,
    SecurityEventKind,
    StationEventKind,
)
from stations.models import (
    ChargingStation,
    Connector,
    DeviceVariable,
    Evse,
    SecurityEvent,
    Site,
    StationEvent,
    StatusChange,
)
from stations.selectors import evse_public_url

# --- sites ------------------------------------------------------------------------------------------


class SiteOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = [
            "id",
            "organisation",
            "name",
            "time_zone",
            "address",
            "city",
            "postal_code",
            "country",
            "latitude",
            "longitude",
            "grid_capacity_w",
            "created_at",
        ]
        read_only_fields = fields


class SiteInputSerializer(StrictInputSerializer):
    """Types only; the rules (time zone, unique name, permissions) are the service's."""

    organisation = serializers.IntegerField(source="organisation_id")
    name = serializers.CharField(max_length=200)
    time_zone = serializers.CharField(
        max_length=64, required=False, help_text="IANA name, e.g. Europe/Berlin."
    )
    address = serializers.CharField(max_length=300, required=False, allow_blank=True)
    city = serializers.CharField(max_length=100, required=False, allow_blank=True)
    postal_code = serializers.CharField(max_length=20, required=False, allow_blank=True)
    country = serializers.CharField(
        max_length=2, required=False, allow_blank=True, help_text="ISO 3166-1 alpha-2, e.g. DE."
    )
    latitude = serializers.DecimalField(max_digits=9, decimal_places=6, required=False, allow_null=True)
    longitude = serializers.DecimalField(max_digits=9, decimal_places=6, required=False, allow_null=True)
    grid_capacity_w = serializers.IntegerField(
        min_value=0, required=False, allow_null=True, help_text="Grid connection capacity in watts."
    )


class SiteFilterSerializer(serializers.Serializer):
    organisation = serializers.IntegerField(required=False)


# --- stations ---------------------------------------------------------------------------------------


class ConnectorOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Connector
        fields = [
            "connector_id",
            "connector_type",
            "max_power_w",
            "status",
            "error_code",
            "status_changed_at",
        ]
        read_only_fields = fields


class EvseOutputSerializer(serializers.ModelSerializer):
    connectors = ConnectorOutputSerializer(many=True, read_only=True)
    public_url = serializers.SerializerMethodField(
        help_text="The page a driver opens from this EVSE's QR code to see the price, pay and charge without "
        "an account: PUBLIC_BASE_URL + /c/<code>/ (without the setting, on the host this request was made to). "
        "It never changes."
    )

    class Meta:
        model = Evse
        fields = ["evse_id", "public_url", "connectors"]
        read_only_fields = fields

    def get_public_url(self, evse: Evse) -> str:
        return evse_public_url(evse, self.context.get("request"))


class StationOutputSerializer(serializers.ModelSerializer):
    connected = serializers.BooleanField(source="is_connected", read_only=True)
    last_seen = serializers.DateTimeField(source="last_seen_at", read_only=True, allow_null=True)
    password_set = serializers.SerializerMethodField(help_text="Whether a Basic-auth password is set.")
    evses = EvseOutputSerializer(many=True, read_only=True)

    class Meta:
        model = ChargingStation
        fields = [
            "identity",
            "name",
            "organisation",
            "site",
            "vendor",
            "model",
            "serial_number",
            "firmware_version",
            "protocol",
            "registration_status",
            "security_profile",
            "password_set",
            "connected",
            "last_seen",
            "evses",
        ]
        read_only_fields = fields

    def get_password_set(self, station: ChargingStation) -> bool:
        return bool(station.password_hash)


class StationInputSerializer(StrictInputSerializer):
    """Types only; the rules (identity, tenancy, password strength) are the service's."""

    # Whitespace is kept as sent: the identity must match the charger's URL byte for byte.
    identity = serializers.CharField(max_length=48, trim_whitespace=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    organisation = serializers.IntegerField(
        source="organisation_id", required=False, help_text="Defaults to the site's organisation."
    )
    site = serializers.IntegerField(source="site_id", required=False, allow_null=True)
    registration_status = serializers.ChoiceField(choices=RegistrationStatus.choices, required=False)
    security_profile = serializers.IntegerField(min_value=0, max_value=3, required=False)
    password = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        help_text="The charger's HTTP Basic password (security profiles 1 and 2); stored hashed, never returned.",
    )


class StationFilterSerializer(serializers.Serializer):
    site = serializers.IntegerField(required=False)
    organisation = serializers.IntegerField(required=False)
    connected = serializers.BooleanField(required=False, allow_null=True, default=None)
    registration_status = serializers.ChoiceField(choices=RegistrationStatus.choices, required=False)
    protocol = serializers.ChoiceField(choices=OcppVersion.choices, required=False)


# --- what stations reported -------------------------------------------------------------------------


class DeviceVariableOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeviceVariable
        fields = [
            "component",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable",
            "variable_instance",
            "attribute_type",
            "value",
            "mutability",
            "persistent",
            "constant",
            "data_type",
            "unit",
            "min_limit",
            "max_limit",
            "values_list",
            "supports_monitoring",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "evse_id": {"help_text": "The OCPP EVSE number; 0 = not tied to an EVSE."},
            "connector_id": {"help_text": "The OCPP connector number; 0 = not tied to a connector."},
        }


class DeviceVariableFilterSerializer(serializers.Serializer):
    component = serializers.CharField(required=False, trim_whitespace=False, help_text="Component name.")
    variable = serializers.CharField(required=False, trim_whitespace=False, help_text="Variable name.")
    evse_id = serializers.IntegerField(required=False, min_value=0, help_text="OCPP EVSE number (0: none).")


class SecurityEventOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(
        source="station.identity",
        read_only=True,
        allow_null=True,
        help_text="Identity of the known station; null for a refused handshake of an unknown identity.",
    )

    class Meta:
        model = SecurityEvent
        fields = ["id", "station", "identity", "kind", "detail", "remote_addr", "created_at"]
        read_only_fields = fields
        extra_kwargs = {"identity": {"help_text": "The identity the event was logged under."}}


class SecurityEventFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SecurityEventKind.choices, required=False)
    created_after = serializers.DateTimeField(required=False, help_text="Created at or after (inclusive).")
    created_before = serializers.DateTimeField(required=False, help_text="Created before (exclusive).")


class SecurityEventListFilterSerializer(SecurityEventFilterSerializer):
    station = serializers.CharField(
        required=False, trim_whitespace=False, help_text="The identity the event was logged under."
    )


class StationEventOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = StationEvent
        fields = ["kind", "detail", "occurred_at", "received_at"]
        read_only_fields = fields


class ReceivedRangeFilterSerializer(serializers.Serializer):
    received_after = serializers.DateTimeField(required=False, help_text="Received at or after (inclusive).")
    received_before = serializers.DateTimeField(required=False, help_text="Received before (exclusive).")


class StationEventFilterSerializer(ReceivedRangeFilterSerializer):
    kind = serializers.ChoiceField(choices=StationEventKind.choices, required=False)


class StatusChangeOutputSerializer(serializers.ModelSerializer):
    # The connector statuses again, but labelled by value: drf-spectacular names an enum by its field and,
    # when a field name has several choice sets, by its component; the same set under "status" in two
    # components gets a hashed name (a schema warning). Different labels keep this set its own component
    # (StatusChangeOutputStatusEnum) and leave ConnectorOutputStatusEnum as it was. The proper fix is
    # ENUM_NAME_OVERRIDES in settings.
    status = serializers.ChoiceField(
        choices=[(value, value) for value in ConnectorStatus.values], read_only=True
    )

    class Meta:
        model = StatusChange
        fields = [
            "evse_id",
            "connector_id",
            "status",
            "error_code",
            "info",
            "vendor_id",
            "vendor_error_code",
            "occurred_at",
            "received_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "evse_id": {"help_text": "OCPP EVSE number; null for the whole station and connection events."},
            "connector_id": {"help_text": "OCPP connector number; null for the whole station."},
        }


class StatusChangeFilterSerializer(ReceivedRangeFilterSerializer):
    evse_id = serializers.IntegerField(required=False, min_value=0, help_text="OCPP EVSE number.")
