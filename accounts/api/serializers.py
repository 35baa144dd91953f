from rest_framework import serializers

from accounts.models import Organisation
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
