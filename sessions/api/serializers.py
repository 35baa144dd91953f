from rest_framework import serializers

from cpms.api import StrictInputSerializer
from sessions.enums import AnomalyKind, IdTokenStatus, IdTokenType, SessionStatus
from sessions.models import ChargingSession, IdToken, MeterValue, SessionAnomaly, TransactionEvent
from sessions.services.tokens import SETTABLE_STATUSES

# --- id tokens --------------------------------------------------------------------------------------


class IdTokenOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = IdToken
        fields = [
            "id",
            "organisation",
            "value",
            "type",
            "status",
            "expires_at",
            "group",
            "owner_name",
            "owner_email",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class IdTokenInputSerializer(StrictInputSerializer):
    organisation = serializers.IntegerField(source="organisation_id")
    value = serializers.CharField(
        max_length=255, trim_whitespace=False, help_text="1.6 idTag / 2.0.1 idToken."
    )
    type = serializers.ChoiceField(choices=IdTokenType.choices, required=False)
    status = serializers.ChoiceField(choices=[(s.value, s.label) for s in SETTABLE_STATUSES], required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    group = serializers.IntegerField(
        source="group_id", required=False, allow_null=True, help_text="An id token of the same organisation."
    )
    owner_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    owner_email = serializers.EmailField(required=False, allow_blank=True)


class IdTokenFilterSerializer(serializers.Serializer):
    organisation = serializers.IntegerField(required=False)
    status = serializers.ChoiceField(choices=IdTokenStatus.choices, required=False)
    type = serializers.ChoiceField(choices=IdTokenType.choices, required=False)
    value = serializers.CharField(required=False, trim_whitespace=False)


# --- sessions ---------------------------------------------------------------------------------------


class SessionOutputSerializer(serializers.ModelSerializer):
    # Careful: ChargingSession.evse_id / connector_id are foreign keys (row ids). The API shows the OCPP
    # numbers, which live on the related rows.
    station = serializers.CharField(source="station.identity", read_only=True, help_text="Station identity.")
    site = serializers.IntegerField(source="station.site_id", read_only=True, allow_null=True)
    evse_id = serializers.IntegerField(source="evse.evse_id", read_only=True, allow_null=True)
    connector_id = serializers.IntegerField(source="connector.connector_id", read_only=True, allow_null=True)
    id_token = serializers.IntegerField(source="id_token_id", read_only=True, allow_null=True)
    flags = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = ChargingSession
        fields = [
            "id",
            "station",
            "site",
            "evse_id",
            "connector_id",
            "transaction_id",
            "id_tag",
            "id_token",
            "started_at",
            "stopped_at",
            "meter_start_wh",
            "meter_stop_wh",
            "energy_wh",
            "status",
            "stop_reason",
            "flags",
            "held_for_review",
            "offline",
        ]
        read_only_fields = fields


class SessionFilterSerializer(serializers.Serializer):
    station = serializers.CharField(required=False, trim_whitespace=False, help_text="Station identity.")
    site = serializers.IntegerField(required=False, help_text="Site id.")
    started_after = serializers.DateTimeField(required=False, help_text="Started at or after (inclusive).")
    started_before = serializers.DateTimeField(required=False, help_text="Started before (exclusive).")
    status = serializers.ChoiceField(choices=SessionStatus.choices, required=False)


# --- what a session recorded ------------------------------------------------------------------------


class MeterValueOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = MeterValue
        fields = [
            "timestamp",
            "measurand",
            "phase",
            "location",
            "unit",
            "context",
            "value",
            "signed_data",
            "evse_id",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "value": {
                "help_text": "A decimal string, exact as stored; null when the charger sent no number."
            },
            "signed_data": {"help_text": "Signed meter data (e.g. OCMF), byte for byte as received."},
            "evse_id": {"help_text": "The OCPP EVSE number (not a row id)."},
        }


class MeterValueFilterSerializer(serializers.Serializer):
    measurand = serializers.CharField(
        required=False, trim_whitespace=False, help_text="e.g. Energy.Active.Import.Register."
    )


class TransactionEventOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = TransactionEvent
        fields = [
            "seq_no",
            "event_type",
            "trigger_reason",
            "timestamp",
            "received_at",
            "offline",
            "charging_state",
        ]
        read_only_fields = fields


class SessionAnomalyOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", read_only=True, help_text="Station identity.")
    session = serializers.IntegerField(
        source="session_id", read_only=True, allow_null=True, help_text="Null when no session matched."
    )

    class Meta:
        model = SessionAnomaly
        fields = ["id", "kind", "station", "session", "transaction_id", "detail", "reviewed", "created_at"]
        read_only_fields = fields


class SessionAnomalyFilterSerializer(serializers.Serializer):
    station = serializers.CharField(required=False, trim_whitespace=False, help_text="Station identity.")
    kind = serializers.ChoiceField(choices=AnomalyKind.choices, required=False)
    reviewed = serializers.BooleanField(required=False, allow_null=True, default=None)
