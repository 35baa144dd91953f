"""The security-profile upgrade of a station: `POST /api/v1/stations/<identity>/security-profile/upgrade/`
(docs/deployment.md#tls-and-mutual-tls). Access (COMMAND) -> parse -> stations.services.transport_security.
security_profile_upgrade -> the commands it sent."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import ErrorOutputSerializer
from stations.api.views import IDENTITY
from stations.selectors import station_access
from stations.services.transport_security import UPGRADE_TARGETS, security_profile_upgrade


class SecurityProfileUpgradeInputSerializer(serializers.Serializer):
    target = serializers.ChoiceField(choices=UPGRADE_TARGETS)
    # 2.0.1 only: where the charger connects at the new profile (default OCPP_TLS_URL), and the network
    # connection profile slot the new profile goes to.
    csms_url = serializers.RegexField(r"^wss://", max_length=512, required=False)
    configuration_slot = serializers.IntegerField(min_value=0, max_value=9, default=1)


class UpgradeCommandOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.CharField()
    status = serializers.CharField()
    response = serializers.JSONField(allow_null=True)
    error_code = serializers.CharField(allow_blank=True)


class SecurityProfileUpgradeOutputSerializer(serializers.Serializer):
    target = serializers.IntegerField()
    started = serializers.BooleanField(help_text="The charger took every call; it reconnects at `target`.")
    refused = serializers.CharField(help_text="The action the charger did not take (empty when started).")
    commands = UpgradeCommandOutputSerializer(many=True)


class SecurityProfileUpgradeApi(APIView):
    @extend_schema(
        tags=["stations"],
        operation_id="stations_security_profile_upgrade",
        summary="Upgrade the station's security profile",
        description="1.6: ChangeConfiguration SecurityProfile. 2.0.1: SetNetworkProfile (a connection profile with "
        "the new securityProfile), SetVariables OCPPCommCtrlr.NetworkConfigurationPriority, Reset OnIdle. Refused "
        "(400) when the target is not above the station's profile, when profile 2 lacks a password, or profile 3 a "
        "valid ChargingStationCertificate in the inventory; 409 when the station is not connected. Once the charger "
        "reconnects at the target, the server never accepts it at less.",
        parameters=[IDENTITY],
        request=SecurityProfileUpgradeInputSerializer,
        responses={
            200: SecurityProfileUpgradeOutputSerializer,
            400: OpenApiResponse(
                description="A prerequisite is missing ({detail: message}), or invalid input."
            ),
            403: OpenApiResponse(ErrorOutputSerializer, description="Your role may not command the station."),
            404: OpenApiResponse(ErrorOutputSerializer, description="Not found, or outside your scope."),
            409: OpenApiResponse(ErrorOutputSerializer, description="The station is not connected."),
        },
    )
    def post(self, request, identity: str):
        station = station_access(
            user=request.user, identity=identity, capability=Capability.COMMAND, with_points=False
        )
        parsed = SecurityProfileUpgradeInputSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        upgrade = security_profile_upgrade(
            station=station,
            target=data["target"],
            actor=request.user,
            csms_url=data.get("csms_url"),
            configuration_slot=data["configuration_slot"],
        )
        return Response(
            SecurityProfileUpgradeOutputSerializer(
                {
                    "target": upgrade.target,
                    "started": upgrade.started,
                    "refused": upgrade.refused,
                    "commands": upgrade.commands,
                }
            ).data
        )
