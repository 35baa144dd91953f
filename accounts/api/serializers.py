from rest_framework import serializers

from accounts.enums import Role
from accounts.models import AuditAction, AuditRecord, Organisation
from cpms.api import StrictInputSerializer


class OrganisationOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organisation
        fields = ["id", "name", "slug", "auto_register_stations", "currency", "created_at"]
        read_only_fields = fields


class OrganisationInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=64)
    auto_register_stations = serializers.BooleanField(
        required=False,
        help_text="Create unknown stations that connect, answered Pending until an operator accepts them.",
    )
    currency = serializers.CharField(
        required=False,
        min_length=3,
        max_length=3,
        help_text="ISO 4217 code (default EUR): the currency of sessions priced without a tariff.",
    )


# --- users and the audit log -------------------------------------------------------------------------


class MembershipOutputSerializer(serializers.Serializer):
    organisation = serializers.IntegerField(source="membership.organisation_id")
    organisation_name = serializers.CharField(source="membership.organisation.name")
    role = serializers.CharField(source="membership.role")
    sites = serializers.ListField(
        child=serializers.IntegerField(), help_text="Site hosts: the sites granted."
    )
    may_set_prices = serializers.ListField(
        child=serializers.IntegerField(), help_text="Site hosts: the sites where they may set prices."
    )


class UserOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    is_active = serializers.BooleanField()
    last_login = serializers.DateTimeField(allow_null=True)
    invitation_pending = serializers.BooleanField(help_text="No password set yet.")
    memberships = MembershipOutputSerializer(many=True, help_text="In the organisations you manage.")


class UserInviteInputSerializer(StrictInputSerializer):
    email = serializers.EmailField(max_length=150)
    organisation = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Role.choices)
    sites = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    may_set_prices = serializers.BooleanField(required=False, default=False)


class UserUpdateInputSerializer(StrictInputSerializer):
    organisation = serializers.IntegerField(
        required=False, help_text="Which membership to change; needed when the user has several you manage."
    )
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    sites = serializers.ListField(child=serializers.IntegerField(), required=False)
    may_set_prices = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(required=False)


class AuditRecordOutputSerializer(serializers.ModelSerializer):
    actor_username = serializers.CharField(source="actor.username", default=None, allow_null=True)

    class Meta:
        model = AuditRecord
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_username",
            "organisation",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "remote_addr",
        ]
        read_only_fields = fields


class AuditFilterInputSerializer(StrictInputSerializer):
    action = serializers.ChoiceField(choices=AuditAction.choices, required=False)
    actor = serializers.IntegerField(required=False)
    organisation = serializers.IntegerField(required=False)
    since = serializers.DateTimeField(required=False, help_text="Inclusive, with an offset.")
    until = serializers.DateTimeField(required=False, help_text="Exclusive, with an offset.")
    limit = serializers.IntegerField(required=False)
    offset = serializers.IntegerField(required=False)
