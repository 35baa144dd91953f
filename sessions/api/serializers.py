from decimal import Decimal

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import prefetch_related_objects
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cpms.api import StrictInputSerializer
from sessions.enums import AnomalyKind, IdTokenStatus, IdTokenType, ReservationStatus, SessionStatus
from sessions.models import (
    ChargingSession,
    IdToken,
    LocalListEntry,
    LocalListState,
    MeterValue,
    Reservation,
    SessionAnomaly,
    TransactionEvent,
)
from sessions.services.tokens import SETTABLE_STATUSES
from stations.api.commands import CommandOutputSerializer
from stations.models import ChargingStation, Site

# --- id tokens --------------------------------------------------------------------------------------


class IdTokenOutputSerializer(serializers.ModelSerializer):
    allowed_sites: serializers.PrimaryKeyRelatedField[Site] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Site ids where the token may charge (with allowed_stations)."
    )
    allowed_stations: serializers.SlugRelatedField[ChargingStation] = serializers.SlugRelatedField(
        many=True,
        read_only=True,
        slug_field="identity",
        help_text="Station identities where the token may charge. Both lists empty: anywhere in its organisation.",
    )

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
            "allowed_sites",
            "allowed_stations",
            "in_local_list",
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
    allowed_sites = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="Site ids of the token's organisation. With allowed_stations: where the token may charge; "
        "both empty, anywhere in its organisation. A PATCH replaces the list.",
    )
    allowed_stations = serializers.ListField(
        child=serializers.CharField(max_length=48, trim_whitespace=False),
        required=False,
        help_text="Station identities of the token's organisation (see allowed_sites).",
    )
    in_local_list = serializers.BooleanField(
        required=False, help_text="Sent to the chargers it may use in their local authorisation list."
    )


class IdTokenFilterSerializer(serializers.Serializer):
    organisation = serializers.IntegerField(required=False)
    status = serializers.ChoiceField(choices=IdTokenStatus.choices, required=False)
    type = serializers.ChoiceField(choices=IdTokenType.choices, required=False)
    value = serializers.CharField(required=False, trim_whitespace=False)


# --- sessions ---------------------------------------------------------------------------------------


class SessionBilledCostSerializer(serializers.Serializer):
    """A billed session's price, from its CDR (billing); amounts are decimal strings, excl. tax unless
    named total."""

    cdr_id = serializers.IntegerField()
    currency = serializers.CharField(help_text="ISO 4217.")
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=4)
    tax = serializers.DecimalField(max_digits=14, decimal_places=4)
    total = serializers.DecimalField(max_digits=14, decimal_places=4)
    net_total = serializers.DecimalField(
        max_digits=14, decimal_places=4, help_text="total after the CDR's credits."
    )


class SessionPaymentSerializer(serializers.Serializer):
    """The ad-hoc card payment of a session (billing's Payment), compact; amounts tax included."""

    id = serializers.IntegerField()
    status = serializers.CharField(
        help_text="As on /payments/: e.g. charging, captured, shortfall (the hold captured, the rest unpaid), "
        "unpaid (capture failed; retried)."
    )
    currency = serializers.CharField(help_text="ISO 4217.")
    hold_amount = serializers.DecimalField(max_digits=14, decimal_places=4)
    captured_amount = serializers.DecimalField(max_digits=14, decimal_places=4)
    refunded_amount = serializers.DecimalField(max_digits=14, decimal_places=4)
    unpaid_amount = serializers.DecimalField(max_digits=14, decimal_places=4)


class SessionListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        # The CDR (a reverse one-to-one owned by billing) and its credits in two queries per page, not two
        # per session.
        sessions = list(data.all() if hasattr(data, "all") else data)
        prefetch_related_objects(sessions, "cdr__credits", "payment")
        return super().to_representation(sessions)


class SessionOutputSerializer(serializers.ModelSerializer):
    # Careful: ChargingSession.evse_id / connector_id are foreign keys (row ids). The API shows the OCPP
    # numbers, which live on the related rows.
    station = serializers.CharField(source="station.identity", read_only=True, help_text="Station identity.")
    site = serializers.IntegerField(source="station.site_id", read_only=True, allow_null=True)
    evse_id = serializers.IntegerField(source="evse.evse_id", read_only=True, allow_null=True)
    connector_id = serializers.IntegerField(source="connector.connector_id", read_only=True, allow_null=True)
    id_token = serializers.IntegerField(source="id_token_id", read_only=True, allow_null=True)
    flags = serializers.ListField(child=serializers.CharField(), read_only=True)
    cost = serializers.SerializerMethodField(
        help_text="The price with its currency once the session is billed (GET .../cost/ for a running "
        "session's cost so far); null until then."
    )
    payment = serializers.SerializerMethodField(
        help_text="The ad-hoc card payment that paid for the session (GET /payments/<id>/ for its refunds); "
        "null for a session not paid by card."
    )

    class Meta:
        model = ChargingSession
        list_serializer_class = SessionListSerializer
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
            "cost",
            "payment",
        ]
        read_only_fields = fields

    @extend_schema_field(SessionBilledCostSerializer(allow_null=True))
    def get_cost(self, session: ChargingSession) -> dict | None:
        try:
            cdr = session.cdr
        except ObjectDoesNotExist:
            return None
        credited = sum((credit.total for credit in cdr.credits.all()), Decimal(0))
        cost = {
            "cdr_id": cdr.pk,
            "currency": cdr.currency,
            "subtotal": cdr.subtotal,
            "tax": cdr.tax,
            "total": cdr.total,
            "net_total": cdr.total + credited,
        }
        return SessionBilledCostSerializer(cost).data

    @extend_schema_field(SessionPaymentSerializer(allow_null=True))
    def get_payment(self, session: ChargingSession) -> dict | None:
        # The reverse one-to-one billing owns, read like `cdr` (the sessions app imports nothing of billing).
        try:
            payment = session.payment
        except ObjectDoesNotExist:
            return None
        return SessionPaymentSerializer(payment).data


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


# --- reservations -----------------------------------------------------------------------------------


class ReservationOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", read_only=True, help_text="Station identity.")
    evse_id = serializers.IntegerField(
        source="evse.evse_id", read_only=True, allow_null=True, help_text="OCPP EVSE number; null: any."
    )
    connector_id = serializers.IntegerField(
        source="connector.connector_id", read_only=True, allow_null=True, help_text="Connector of the EVSE."
    )
    id_token = serializers.IntegerField(source="id_token_id", read_only=True)
    id_tag = serializers.CharField(source="id_token.value", read_only=True, help_text="The token's value.")
    session = serializers.IntegerField(
        source="session_id", read_only=True, allow_null=True, help_text="The session that used it."
    )
    command = CommandOutputSerializer(
        read_only=True, allow_null=True, help_text="The last call about it (ReserveNow, CancelReservation)."
    )

    class Meta:
        model = Reservation
        fields = [
            "id",
            "station",
            "evse_id",
            "connector_id",
            "id_token",
            "id_tag",
            "expires_at",
            "status",
            "charger_status",
            "session",
            "command",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "id": {"help_text": "Also the OCPP reservationId."},
            "charger_status": {
                "help_text": "What the charger answered (Accepted, Occupied, Faulted, Unavailable, Rejected) "
                "or reported (Expired, Removed); CancelRejected when it held no such reservation; the error "
                "code of a call that failed."
            },
        }


class ReservationInputSerializer(StrictInputSerializer):
    station = serializers.CharField(max_length=48, trim_whitespace=False, help_text="Station identity.")
    evse_id = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="OCPP EVSE number (1.6: the connectorId). Absent: any connector.",
    )
    connector_id = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="A connector of that EVSE (2.0.1 sends its connector type when known).",
    )
    id_token = serializers.IntegerField(help_text="Id token id, of the station's organisation.")
    expires_at = serializers.DateTimeField(help_text="At most 24 hours ahead.")


class ReservationFilterSerializer(serializers.Serializer):
    station = serializers.CharField(required=False, trim_whitespace=False, help_text="Station identity.")
    status = serializers.ChoiceField(choices=ReservationStatus.choices, required=False)
    id_token = serializers.IntegerField(required=False, help_text="Id token id.")


# --- local authorisation lists ----------------------------------------------------------------------


class LocalListStateOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = LocalListState
        fields = ["version", "reported_version", "synced_at", "last_error"]
        read_only_fields = fields
        extra_kwargs = {
            "version": {"help_text": "The version of the last update the station accepted (0: none yet)."},
            "reported_version": {"help_text": "What the station last said it holds (GetLocalListVersion)."},
            "last_error": {
                "help_text": "Set: we are not sure what the station holds; the next sync is Full."
            },
        }


class LocalListEntryOutputSerializer(serializers.ModelSerializer):
    id_token = serializers.IntegerField(source="id_token_id", read_only=True)
    value = serializers.CharField(source="id_token.value", read_only=True)

    class Meta:
        model = LocalListEntry
        fields = ["id_token", "value", "status", "expires_at", "group_value"]
        read_only_fields = fields


class LocalListOutputSerializer(serializers.Serializer):
    station = serializers.CharField()
    state = LocalListStateOutputSerializer()
    entries = LocalListEntryOutputSerializer(many=True, help_text="As the station holds them, by value.")


class LocalListSyncInputSerializer(StrictInputSerializer):
    full = serializers.BooleanField(
        required=False, default=False, help_text="Send the whole list (Full) even if a Differential would do."
    )


class LocalListSyncOutputSerializer(serializers.Serializer):
    update_type = serializers.CharField(allow_null=True, help_text="Full or Differential; null: up to date.")
    entries = serializers.IntegerField(help_text="Tokens sent with their status (added, changed, or all).")
    removals = serializers.IntegerField(help_text="Tokens sent for removal.")
    commands = CommandOutputSerializer(many=True, help_text="One per message (a list may take several).")
    state = LocalListStateOutputSerializer()
