"""Ad-hoc card payments over the API (issue 18, the operator's side): the payments of the stations you see
with their holds, captures, refunds and what is left unpaid; a refund (a credit on the CDR and a refund at
the provider of the same total); an organisation's payment settings, whose secrets are write-only.

Scope as everywhere (billing.selectors): 404 for a payment outside it, 403 for one the role may not refund.
The driver's secret (its hash) and the provider's stored keys are never in an answer.
"""

from decimal import Decimal

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from accounts.selectors import organisation_access
from billing.api.serializers import AsWrittenDecimalField
from billing.enums import PaymentStatus, RefundStatus
from billing.models import Payment, PaymentRefund, PaymentSettings
from billing.selectors import (
    PAYMENT_STATUS_FILTER_CHOICES,
    payment_access,
    payment_list,
    payment_webhook_url,
)
from billing.services.payments import (
    PaymentSettingsInput,
    payment_refund,
    payment_settings_get,
    payment_settings_update,
)
from cpms.api import (
    BAD_REQUEST,
    FORBIDDEN,
    NOT_FOUND,
    ErrorOutputSerializer,
    StrictInputSerializer,
    paginated_response,
)

TAGS = ["billing"]
MONEY = {"max_digits": 14, "decimal_places": 4, "read_only": True}

# --- serializers ---------------------------------------------------------------------------------------

# drf-spectacular names a choice set after its field ("status") and prefixes the component's name when
# several sets share a field name; a set used by two components would get a hashed name and a warning.


@extend_schema_field({"type": "string", "enum": PaymentStatus.values})
class PaymentStatusField(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "enum": RefundStatus.values})
class RefundStatusField(serializers.CharField):
    pass


class PaymentRefundOutputSerializer(serializers.ModelSerializer):
    status = RefundStatusField(
        read_only=True, help_text="pending (at the provider; retried), succeeded or failed."
    )
    credit = serializers.IntegerField(
        source="credit_id", read_only=True, help_text="The CdrCredit of the same total."
    )
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, default=None, allow_null=True, help_text="Username."
    )

    class Meta:
        model = PaymentRefund
        fields = ["id", "payment", "credit", "amount", "status", "error", "created_by", "created_at"]
        read_only_fields = fields
        extra_kwargs = {
            "amount": {"help_text": "Given back to the card, tax included (the credit's total, positive)."},
            "error": {"help_text": "The provider's message when it failed or is being retried."},
        }


class PaymentOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", read_only=True, help_text="Station identity.")
    site = serializers.IntegerField(source="station.site_id", read_only=True, allow_null=True)
    evse_id = serializers.IntegerField(
        source="evse.evse_id", read_only=True, help_text="OCPP EVSE number (not a row id)."
    )
    session = serializers.IntegerField(source="session_id", read_only=True, allow_null=True)
    # In the list too: one serializer, so that the status enum belongs to one schema component (see above).
    refunds = PaymentRefundOutputSerializer(many=True, read_only=True)
    status = PaymentStatusField(
        read_only=True,
        help_text="pending, authorised (hold placed), starting, charging, settling, captured, shortfall "
        "(the hold captured, the rest unpaid), unpaid (capture failed; retried), released, declined, error.",
    )

    class Meta:
        model = Payment
        fields = [
            "id",
            "organisation",
            "station",
            "site",
            "evse_id",
            "session",
            "status",
            "currency",
            "hold_amount",
            "captured_amount",
            "refunded_amount",
            "unpaid_amount",
            "card_hint",
            "failure",
            "capture_attempts",
            "next_attempt_at",
            "created_at",
            "authorised_at",
            "settled_at",
            "refunds",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "hold_amount": {"help_text": "Held on the card when the driver paid, tax included."},
            "captured_amount": {"help_text": "Taken from the hold: the CDR's total, at most the hold."},
            "refunded_amount": {"help_text": "Given back so far (successful refunds)."},
            "unpaid_amount": {"help_text": "What the session cost beyond the capture."},
            "card_hint": {"help_text": "The card's brand and last digits, as the provider reports them."},
            "failure": {"help_text": "Why the card was declined, the hold released, or the last error."},
            "next_attempt_at": {"help_text": "When an unpaid capture is tried again; null: not retried."},
        }


class PaymentFilterSerializer(serializers.Serializer):
    organisation = serializers.IntegerField(required=False, help_text="Organisation id.")
    # Text, not a choice: the statuses plus `unpaid` would be a second enum named "status" in the schema.
    # The selector refuses an unknown value (400).
    status = serializers.CharField(
        required=False,
        help_text="A payment status, or `unpaid`: unpaid and shortfall (what is owed to the operator). "
        f"One of: {', '.join(value for value, _ in PAYMENT_STATUS_FILTER_CHOICES)}.",
    )
    site = serializers.IntegerField(required=False, help_text="Site id.")
    station = serializers.CharField(required=False, trim_whitespace=False, help_text="Station identity.")
    created_after = serializers.DateTimeField(required=False, help_text="Created at or after (inclusive).")
    created_before = serializers.DateTimeField(required=False, help_text="Created before (exclusive).")


class PaymentRefundInputSerializer(StrictInputSerializer):
    amount = AsWrittenDecimalField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Tax included, in the payment's currency (at most its minor unit of decimals). Absent or "
        "null: all that is left to refund.",
    )
    reason = serializers.CharField(help_text="Why: kept with the CDR credit (`Refund: <reason>`).")


class PaymentSettingsOutputSerializer(serializers.ModelSerializer):
    secret_key_set = serializers.SerializerMethodField(help_text="Whether a secret key is stored.")
    webhook_secret_set = serializers.SerializerMethodField(help_text="Whether a webhook secret is stored.")
    adhoc_group_id = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="The id token group of every ad-hoc payment: assign it a tariff (POST "
        "/tariff-assignments/ with id_token_group) to price card payments.",
    )
    webhook_url = serializers.SerializerMethodField(
        help_text="Where the provider sends this organisation's events (set it in the provider's dashboard)."
    )

    class Meta:
        model = PaymentSettings
        fields = [
            "organisation",
            "enabled",
            "provider",
            "publishable_key",
            "secret_key_set",
            "webhook_secret_set",
            "api_base",
            "js_url",
            "hold_amount",
            "start_timeout_s",
            "operator_legal_name",
            "operator_address",
            "operator_vat_id",
            "adhoc_group_id",
            "webhook_url",
            "updated_at",
        ]
        read_only_fields = fields

    def get_secret_key_set(self, row: PaymentSettings) -> bool:
        return bool(row.secret_key_encrypted)

    def get_webhook_secret_set(self, row: PaymentSettings) -> bool:
        return bool(row.webhook_secret_encrypted)

    def get_webhook_url(self, row: PaymentSettings) -> str:
        return payment_webhook_url(organisation_id=row.organisation_id, request=self.context.get("request"))


class PaymentSettingsInputSerializer(StrictInputSerializer):
    enabled = serializers.BooleanField()
    publishable_key = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    secret_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        default=None,
        help_text="Write-only. Absent or null: keep the stored one.",
    )
    webhook_secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        default=None,
        help_text="Write-only. Absent or null: keep the stored one.",
    )
    api_base = serializers.URLField(
        required=False, allow_blank=True, default="", help_text="Empty: Stripe itself."
    )
    js_url = serializers.URLField(required=False, allow_blank=True, default="", help_text="Empty: Stripe.js.")
    hold_amount = AsWrittenDecimalField(help_text="Held on the driver's card, tax included.")
    start_timeout_s = serializers.IntegerField(
        help_text="Seconds the driver has to plug in after paying (30..3600)."
    )
    operator_legal_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    operator_address = serializers.CharField(required=False, allow_blank=True, default="")
    operator_vat_id = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")


# --- views ---------------------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class PaymentListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="payments_list",
        description="Ad-hoc card payments at the stations you see, newest first. `status=unpaid` lists "
        "what is owed: failed captures (retried, then left to you) and sessions that cost more than the "
        "hold.",
        parameters=[PaymentFilterSerializer],
        responses={200: PaymentOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = PaymentFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        payments = payment_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=payments, serializer_class=PaymentOutputSerializer
        )


@extend_schema(tags=TAGS)
class PaymentDetailApi(APIView):
    @extend_schema(
        operation_id="payments_retrieve",
        description="The payment with its refunds (each with its CDR credit).",
        responses={200: PaymentOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        return Response(PaymentOutputSerializer(payment_access(user=request.user, pk=pk)).data)


@extend_schema(tags=TAGS)
class PaymentRefundApi(APIView):
    @extend_schema(
        operation_id="payments_refund_create",
        summary="Refund a captured payment",
        description="A credit on the session's CDR and a refund at the provider of the credit's exact "
        "total, created together. Needs the billing right on the organisation (operator admins, finance). "
        "The refund is `pending` when the provider did not answer: it is retried, never sent twice.",
        request=PaymentRefundInputSerializer,
        responses={
            201: PaymentRefundOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(
                ErrorOutputSerializer, description="Not captured, or nothing is left to refund."
            ),
        },
    )
    def post(self, request, pk: int):
        payment = payment_access(user=request.user, pk=pk, capability=Capability.BILLING)
        serializer = PaymentRefundInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        amount: Decimal | None = serializer.validated_data["amount"]
        refund = payment_refund(
            payment=payment, user=request.user, amount=amount, reason=serializer.validated_data["reason"]
        )
        return Response(PaymentRefundOutputSerializer(refund).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS)
class PaymentSettingsApi(APIView):
    @extend_schema(
        operation_id="organisations_payment_settings_retrieve",
        description="The organisation's ad-hoc payment settings; the secrets only as `*_set`. Operator "
        "admins (manage right) only.",
        responses={200: PaymentSettingsOutputSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        organisation = organisation_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        row = payment_settings_get(organisation=organisation)
        return Response(PaymentSettingsOutputSerializer(row, context={"request": request}).data)

    @extend_schema(
        operation_id="organisations_payment_settings_update",
        summary="Set an organisation's ad-hoc card payment",
        description="Enabling needs publishable_key, secret_key and webhook_secret (stored encrypted, never "
        "shown again) and creates the ad-hoc token group (`adhoc_group_id`), to which a tariff is then "
        "assigned like to any group. Operator admins (manage right) only.",
        request=PaymentSettingsInputSerializer,
        responses={200: PaymentSettingsOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def put(self, request, pk: int):
        organisation = organisation_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = PaymentSettingsInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = payment_settings_update(
            organisation=organisation,
            user=request.user,
            data=PaymentSettingsInput(**serializer.validated_data),
        )
        return Response(PaymentSettingsOutputSerializer(row, context={"request": request}).data)
