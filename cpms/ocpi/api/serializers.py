"""Roaming over the REST API: input and output serializers kept apart.

No output carries a credentials token or its hash: the token a partner calls us with is kept as a hash, the
one we call it with encrypted, and neither is ever serialised. Token A is the one exception, in the answer that
creates or renews it (`PartnerCreatedOutputSerializer`, `TokenAOutputSerializer`): the operator hands it to
the partner out of band, and it is never shown again.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cpms.api import StrictInputSerializer
from cpms.ocpi.enums import OutboxStatus, PartnerStatus, RealtimeAuthFallback
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner, OcpiParty

# Choice sets as inline enums: drf-spectacular names a model's choice set after its field ("status") and
# several apps have one, which would be a name clash (a warning, and the schema test fails on warnings).


@extend_schema_field({"type": "string", "enum": PartnerStatus.values})
class PartnerStatusField(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "enum": OutboxStatus.values})
class OutboxStatusField(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "enum": RealtimeAuthFallback.values})
class FallbackOutputField(serializers.CharField):
    pass


# --- parties ---------------------------------------------------------------------------------------------


class PartyOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = OcpiParty
        fields = ["id", "organisation", "country_code", "party_id", "name", "website", "created_at"]
        read_only_fields = fields


class PartyInputSerializer(StrictInputSerializer):
    """Types only; the rules (format, one party per organisation, a code nobody else uses) are the
    service's."""

    organisation = serializers.IntegerField(help_text="Organisation id: one party per organisation.")
    country_code = serializers.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, e.g. NL.")
    party_id = serializers.CharField(
        max_length=3, help_text="ISO 15118 party id: 3 letters or digits (upper-cased), e.g. ABC."
    )
    name = serializers.CharField(max_length=100, help_text="Business name sent in the credentials.")
    website = serializers.URLField(max_length=200, required=False, allow_blank=True, default="")


# --- partners --------------------------------------------------------------------------------------------


class EndpointSerializer(serializers.Serializer):
    identifier = serializers.CharField(help_text="OCPI module, e.g. locations.")
    role = serializers.CharField(help_text="SENDER or RECEIVER (the partner's role in that module).")
    url = serializers.CharField()


class BusinessDetailsSerializer(serializers.Serializer):
    name = serializers.CharField()
    website = serializers.CharField(required=False)


class PartnerRoleSerializer(serializers.Serializer):
    role = serializers.CharField(help_text="CPO, EMSP, HUB, NAP, NSP, OTHER or SCSP.")
    country_code = serializers.CharField()
    party_id = serializers.CharField()
    business_details = BusinessDetailsSerializer()


class PartnerOutputSerializer(serializers.ModelSerializer):
    party_code = serializers.SerializerMethodField(help_text='Our party, "<country>*<party id>".')
    status: serializers.CharField = PartnerStatusField(
        read_only=True,
        help_text="PENDING (token A issued, not registered), REGISTERED, SUSPENDED (its token refused, "
        "nothing sent; the outbox keeps filling) or UNREGISTERED.",
    )
    partner_versions_url = serializers.CharField(
        source="versions_url", read_only=True, help_text="The partner's versions endpoint, once registered."
    )
    endpoints = EndpointSerializer(many=True, read_only=True)
    roles = PartnerRoleSerializer(many=True, read_only=True)
    realtime_auth_fallback: serializers.CharField = FallbackOutputField(
        read_only=True,
        help_text="What a charger is told when the partner does not answer a real-time authorisation in "
        "time: REJECT or ACCEPT.",
    )
    published_sites = serializers.ManyRelatedField(
        child_relation=serializers.PrimaryKeyRelatedField(read_only=True),
        read_only=True,
        help_text="Site ids published when publish_all_sites is false.",
    )
    outbox_backlog = serializers.IntegerField(read_only=True, help_text="Pushes waiting to be delivered.")
    outbox_refused = serializers.IntegerField(
        read_only=True, help_text="Pushes the partner refused, set aside (see retry-refused)."
    )

    class Meta:
        model = OcpiPartner
        fields = [
            "id",
            "party",
            "party_code",
            "name",
            "status",
            "version",
            "partner_versions_url",
            "roles",
            "endpoints",
            "realtime_auth_fallback",
            "allow_charging_profiles",
            "publish_all_sites",
            "published_sites",
            "id_token_group",
            "outbox_backlog",
            "outbox_refused",
            "last_success_at",
            "last_error_at",
            "last_error",
            "registered_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "id_token_group": {
                "help_text": "The id token group of the partner's drivers: a tariff assigned to it (POST "
                "/tariff-assignments/ with id_token_group) is the partner's tariff. Null until the partner "
                "pushes its first token."
            },
            "last_error": {"help_text": "The last failed push's error."},
        }

    def get_party_code(self, partner: OcpiPartner) -> str:
        return str(partner.party)


class PartnerCreatedOutputSerializer(PartnerOutputSerializer):
    # Plain text here: an enum in two components would be a second schema name for one choice set.
    status = serializers.CharField(read_only=True, help_text="PENDING: the partner has not registered yet.")
    realtime_auth_fallback = serializers.CharField(read_only=True, help_text="REJECT or ACCEPT.")
    token_a = serializers.CharField(
        read_only=True,
        help_text="The credentials token A for the partner to register with (shown only in this answer).",
    )
    versions_url = serializers.CharField(
        source="our_versions_url",
        read_only=True,
        help_text="Our versions endpoint, which the partner registers at with token A.",
    )

    class Meta(PartnerOutputSerializer.Meta):
        fields = [*PartnerOutputSerializer.Meta.fields, "token_a", "versions_url"]
        read_only_fields = fields


class PartnerCreateInputSerializer(StrictInputSerializer):
    party = serializers.IntegerField(help_text="Our party (id) the partner connects to.")
    name = serializers.CharField(max_length=100)


class PartnerUpdateInputSerializer(StrictInputSerializer):
    """Every field optional: what is given is changed."""

    name = serializers.CharField(max_length=100, required=False)
    realtime_auth_fallback = serializers.ChoiceField(
        choices=RealtimeAuthFallback.choices,
        required=False,
        help_text="REJECT (default) or ACCEPT (the partner bears the risk it agreed to).",
    )
    allow_charging_profiles = serializers.BooleanField(required=False)
    publish_all_sites = serializers.BooleanField(
        required=False, help_text="Publish every site of the organisation (else only published_sites)."
    )
    published_sites = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        max_length=10_000,
        help_text="Site ids of the party's organisation (used when publish_all_sites is false).",
    )


class PartnerRegisterInputSerializer(StrictInputSerializer):
    versions_url = serializers.URLField(max_length=255, help_text="The partner's versions endpoint.")
    token_a = serializers.CharField(
        max_length=64, write_only=True, help_text="The token A the partner gave us (not stored)."
    )


class TokenAOutputSerializer(serializers.Serializer):
    token_a = serializers.CharField(help_text="The new token A (shown only in this answer).")
    versions_url = serializers.CharField(help_text="Our versions endpoint.")


class SyncOutputSerializer(serializers.Serializer):
    locations = serializers.IntegerField(help_text="Location pushes queued.")
    tariffs = serializers.IntegerField(help_text="Tariff pushes queued.")


class RetryRefusedOutputSerializer(serializers.Serializer):
    requeued = serializers.IntegerField(help_text="Refused pushes put back in the queue.")


# --- outbox ----------------------------------------------------------------------------------------------


class OutboxSummarySerializer(serializers.Serializer):
    backlog = serializers.IntegerField(help_text="Pushes waiting to be delivered.")
    oldest_pending_at = serializers.DateTimeField(allow_null=True, help_text="When the oldest was queued.")
    refused = serializers.IntegerField(help_text="Refused by the partner and set aside.")
    delivered = serializers.IntegerField(help_text="Delivered (kept OCPI_OUTBOX_KEEP_DAYS).")
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_error_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()


class OutboxItemOutputSerializer(serializers.ModelSerializer):
    """A push without its body (an OCPI object: the admin shows it to superusers and operators)."""

    status = OutboxStatusField(read_only=True, help_text="PENDING, DELIVERED or REFUSED.")

    class Meta:
        model = OcpiOutboxItem
        fields = [
            "id",
            "module",
            "object_key",
            "method",
            "path",
            "to_country_code",
            "to_party_id",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class OutboxOutputSerializer(serializers.Serializer):
    summary = OutboxSummarySerializer()
    count = serializers.IntegerField(help_text="Items in the outbox (all statuses).")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = OutboxItemOutputSerializer(many=True, help_text="The latest items, newest first.")
