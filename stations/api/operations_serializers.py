"""Input and output of the version-neutral operations (stations/api/operations.py). The same body works for a
1.6 and a 2.0.1 station; cpms.ocpp_wire.operations turns it into the station's OCPP call.

Types only here: what a version can express (a 1.6 reset of one EVSE, a 1.6 idTag over 20 characters) is
the builders' to refuse, with a message naming the version."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cpms.api import StrictInputSerializer
from cpms.ocpp_wire.operations import (
    AVAILABILITY_STATUSES,
    CENTRAL_TOKEN,
    ID_TOKEN_TYPES,
    RESET_TYPES,
    TRIGGER_MESSAGES,
)
from stations.api.commands import (
    MAX_QUEUE_S,
    MAX_TIMEOUT_S,
    CommandOutputSerializer,
)

ATTRIBUTE_TYPES = ("Actual", "Target", "MinSet", "MaxSet")


class OperationInputSerializer(StrictInputSerializer):
    """Every operation: an optional timeout. Unknown fields are refused."""

    timeout = serializers.FloatField(
        required=False,
        min_value=1,
        max_value=MAX_TIMEOUT_S,
        help_text="Seconds to wait for the charger's answer (default OCPP_CALL_TIMEOUT_S).",
    )
    queue = serializers.FloatField(
        required=False,
        min_value=1,
        max_value=MAX_QUEUE_S,
        help_text="Outbox: when the station is offline, keep the command this many seconds and send it when "
        "the station connects (answer 202). Without it, an offline station is a 409.",
    )


class TargetInputSerializer(OperationInputSerializer):
    """A point of the station: evse_id (with connector_id for one of its connectors), or connector_id alone,
    counting the station's connectors in order (1.6 connectorId; in 2.0.1 the n-th connector reported)."""

    evse_id = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    connector_id = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


class RemoteStartInputSerializer(TargetInputSerializer):
    """Start charging with a token, on a given EVSE or connector or wherever the station chooses."""

    id_token = serializers.CharField(max_length=255, help_text="The token to charge with (1.6 idTag).")
    id_token_type = serializers.ChoiceField(
        choices=ID_TOKEN_TYPES,
        default=CENTRAL_TOKEN,
        help_text="2.0.1 IdTokenEnumType of the token (1.6 has none).",
    )
    charging_profile = serializers.DictField(
        required=False, help_text="A charging profile in the station's OCPP version's own format."
    )


class RemoteStopInputSerializer(OperationInputSerializer):
    """Stop one transaction: our session id or the transaction id on the wire, one of them."""

    session_id = serializers.IntegerField(required=False, min_value=1, help_text="Our charging session id.")
    transaction_id = serializers.CharField(
        required=False, max_length=36, help_text="The transaction id on the wire (instead of session_id)."
    )

    def validate(self, attrs):
        if ("session_id" in attrs) == ("transaction_id" in attrs):
            raise serializers.ValidationError("Give either session_id or transaction_id.")
        return attrs


class ResetInputSerializer(OperationInputSerializer):
    """Reset the station (or, on 2.0.1, one EVSE)."""

    kind = serializers.ChoiceField(
        choices=RESET_TYPES,
        help_text="hard/immediate: reset now (1.6 Hard, 2.0.1 Immediate); soft/on_idle: the gentle reset "
        "(1.6 Soft, 2.0.1 OnIdle).",
    )
    evse_id = serializers.IntegerField(
        required=False, min_value=1, max_value=2**31 - 1, help_text="Reset one EVSE only (2.0.1)."
    )


class UnlockInputSerializer(OperationInputSerializer):
    """Unlock one connector."""

    evse_id = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    connector_id = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        help_text="With evse_id: that EVSE's connector. Alone: the station's n-th connector.",
    )


class ChangeAvailabilityInputSerializer(TargetInputSerializer):
    """The whole station without evse_id/connector_id; an EVSE or a connector with them."""

    status = serializers.ChoiceField(choices=AVAILABILITY_STATUSES)


class VariableRefInputSerializer(StrictInputSerializer):
    """A 2.0.1 component and variable (and attribute type, default Actual)."""

    component = serializers.CharField(max_length=50)
    variable = serializers.CharField(max_length=50)
    component_instance = serializers.CharField(max_length=50, required=False)
    variable_instance = serializers.CharField(max_length=50, required=False)
    evse_id = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    connector_id = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    attribute_type = serializers.ChoiceField(choices=ATTRIBUTE_TYPES, required=False)


VARIABLE_REF_SCHEMA = {
    "oneOf": [
        {
            "type": "string",
            "maxLength": 101,
            "description": 'A 1.6 configuration key ("HeartbeatInterval"), or a 2.0.1 "Component.Variable" '
            '("OCPPCommCtrlr.HeartbeatInterval").',
        },
        {
            "type": "object",
            "description": "A 2.0.1 component and variable.",
            "properties": {
                "component": {"type": "string", "maxLength": 50},
                "variable": {"type": "string", "maxLength": 50},
                "component_instance": {"type": "string", "maxLength": 50},
                "variable_instance": {"type": "string", "maxLength": 50},
                "evse_id": {"type": "integer", "minimum": 1},
                "connector_id": {"type": "integer", "minimum": 1},
                "attribute_type": {"type": "string", "enum": list(ATTRIBUTE_TYPES)},
            },
            "required": ["component", "variable"],
            "additionalProperties": False,
        },
    ]
}


@extend_schema_field(VARIABLE_REF_SCHEMA)
class VariableRefField(serializers.Field):
    """A configuration key or 2.0.1 variable: a string, or an object (VariableRefInputSerializer)."""

    default_error_messages = {"invalid": "Expected a string or an object with component and variable."}

    def to_internal_value(self, data):
        if isinstance(data, str):
            if not data or len(data) > 101:
                self.fail("invalid")
            return data
        if isinstance(data, dict):
            ref = VariableRefInputSerializer(data=data)
            ref.is_valid(raise_exception=True)
            return dict(ref.validated_data)
        self.fail("invalid")

    def to_representation(self, value):
        return value


class GetConfigurationInputSerializer(OperationInputSerializer):
    """Keys (1.6) or variables (2.0.1) to read; none for all."""

    keys = serializers.ListField(
        child=VariableRefField(),
        required=False,
        max_length=500,
        help_text="Which keys / variables; none: all of them (2.0.1: a full base report, sent by the station "
        "as NotifyReport messages).",
    )


class SettingInputSerializer(StrictInputSerializer):
    """One setting: the key (1.6) or variable (2.0.1) and its new value."""

    key = VariableRefField()
    value = serializers.CharField(max_length=2500, allow_blank=True, trim_whitespace=False)


class SetConfigurationInputSerializer(OperationInputSerializer):
    """Settings to change, sent in this order."""

    values = serializers.ListField(child=SettingInputSerializer(), min_length=1, max_length=100)


class TriggerMessageInputSerializer(TargetInputSerializer):
    """A message to send now, for the station or one EVSE / connector."""

    message = serializers.ChoiceField(
        choices=list(TRIGGER_MESSAGES),
        help_text="DiagnosticsStatusNotification and LogStatusNotification are the same on every version "
        "(1.6 Diagnostics..., 2.0.1 Log...).",
    )


class ClearCacheInputSerializer(OperationInputSerializer):
    """Nothing but the optional timeout."""


class DataTransferInputSerializer(OperationInputSerializer):
    """Vendor-specific data."""

    vendor_id = serializers.CharField(max_length=255)
    message_id = serializers.CharField(max_length=50, required=False)
    # A field named like Serializer.data (the ignore): DRF's metaclass collects it as a field all the same.
    data = serializers.JSONField(  # type: ignore[assignment]
        required=False, help_text="Any JSON; sent as JSON text to a 1.6 station."
    )


# --- set-configuration: several calls on 1.6 ---------------------------------------------------------------


class SettingOutcomeSerializer(serializers.Serializer):
    """One setting as given, and what the charger answered for it."""

    key = VariableRefField()
    value = serializers.CharField()
    status = serializers.CharField(
        allow_null=True,
        help_text="The charger's answer for this setting (Accepted, Rejected, RebootRequired, NotSupported, "
        "UnknownVariable...); null when its call got no answer or was not sent.",
    )


class CallOutcomeSerializer(serializers.Serializer):
    """One call sent: what the generic OCPP endpoint answers for it, with its HTTP status."""

    status_code = serializers.IntegerField(
        help_text="The HTTP status this call alone would have had (200, 409, 502, 504)."
    )
    action = serializers.CharField(required=False)
    request = serializers.JSONField(required=False)
    response = serializers.JSONField(required=False)
    detail = serializers.CharField(required=False)
    error = serializers.JSONField(required=False, help_text="The CALLERROR: code, description, details.")
    command = CommandOutputSerializer()


class SetConfigurationOutputSerializer(serializers.Serializer):
    """Per setting its status, and every call sent with its outcome."""

    settings = SettingOutcomeSerializer(many=True)
    calls = CallOutcomeSerializer(
        many=True,
        help_text="Every call sent, in order: one SetVariables on 2.0.1, one ChangeConfiguration per key on "
        "1.6 (stopping at the first that got no answer).",
    )


class DisplayPaymentUrlInputSerializer(OperationInputSerializer):
    """Show each EVSE's payment URL on the station's display: no fields but the common options (`queue` keeps
    the messages for an offline station; `timeout` is how long the station has to answer each)."""


class DisplayPaymentUrlOutputSerializer(serializers.Serializer):
    commands = CommandOutputSerializer(
        many=True,
        help_text="One SetDisplayMessage per EVSE, by EVSE number, as recorded now: the answers arrive later "
        "(GET /api/v1/commands/<id>/).",
    )
