"""Certificate authorities and station certificates over the API (stations/services/certificates.py).

Who may do what:
- CAs: listed to users who MANAGE their organisation; created or imported with MANAGE there (an
  organisation in the body that the user cannot see is a 400). A CA's private key goes in (import) and never
  comes out: answers carry the certificate, its fingerprint and whether we hold a key.
- a station's certificates (the inventory): VIEW on the station (certificates are public; keys are not in
  the inventory at all); revoke and renew: MANAGE on the station's organisation (site hosts and finance
  users may not).
Objects in the URL outside the user's scope are 404.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from accounts.selectors import organisation_access, organisation_ids_with
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, paginated_response
from cpms.errors import NotFound, ValidationFailed
from stations.api.views import IDENTITY
from stations.enums import CertificateAuthorityPurpose, CommandStatus
from stations.models import CertificateAuthority, StationCertificate
from stations.selectors import station_access
from stations.services import certificates as service

# --- serializers ---------------------------------------------------------------------------------------


class CertificateAuthorityOutputSerializer(serializers.ModelSerializer):
    fingerprint_sha256 = serializers.SerializerMethodField()
    has_key = serializers.SerializerMethodField()
    crl_url = serializers.SerializerMethodField()

    class Meta:
        model = CertificateAuthority
        # Named one by one: the encrypted key must never be listed here.
        fields = [
            "id",
            "organisation",
            "name",
            "purpose",
            "certificate_pem",
            "fingerprint_sha256",
            "has_key",
            "crl_url",
            "crl_number",
            "active",
            "not_after",
            "created_at",
        ]

    def get_fingerprint_sha256(self, ca: CertificateAuthority) -> str:
        return service.fingerprint(ca.certificate_pem)

    def get_has_key(self, ca: CertificateAuthority) -> bool:
        return bool(ca.private_key_encrypted)

    def get_crl_url(self, ca: CertificateAuthority) -> str | None:
        return service.crl_url(ca) if ca.private_key_encrypted else None


class CertificateAuthorityInputSerializer(serializers.Serializer):
    organisation = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    purpose = serializers.ChoiceField(choices=CertificateAuthorityPurpose.choices)
    valid_days = serializers.IntegerField(min_value=1, max_value=36500, default=3650)
    key_type = serializers.ChoiceField(choices=["ec", "rsa"], default="ec")


class CertificateAuthorityImportSerializer(serializers.Serializer):
    organisation = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    purpose = serializers.ChoiceField(choices=CertificateAuthorityPurpose.choices)
    certificate_pem = serializers.CharField(max_length=20000)
    private_key_pem = serializers.CharField(
        max_length=20000, required=False, allow_blank=True, write_only=True, trim_whitespace=False
    )


class StationCertificateOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", allow_null=True, read_only=True)

    class Meta:
        model = StationCertificate
        fields = [
            "id",
            "station",
            "use",
            "source",
            "status",
            "hash_algorithm",
            "issuer_name_hash",
            "issuer_key_hash",
            "serial_number",
            "subject",
            "not_before",
            "not_after",
            "certificate_pem",
            "issued_by",
            "revoked_at",
            "revocation_reason",
            "renewal_requested_at",
            "created_at",
        ]


class RevokeInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200)


class RenewInputSerializer(serializers.Serializer):
    certificate_type = serializers.ChoiceField(
        choices=["ChargingStationCertificate", "V2GCertificate"], default="ChargingStationCertificate"
    )


class RenewOutputSerializer(serializers.Serializer):
    action = serializers.CharField()
    status = serializers.CharField()
    response = serializers.JSONField(allow_null=True)
    detail = serializers.CharField(required=False)


# --- certificate authorities --------------------------------------------------------------------------------


def _organisation(user, pk: int):
    try:
        return organisation_access(user=user, pk=pk, capability=Capability.MANAGE)
    except NotFound as exc:
        # An id in the body: 400, as any other input that names nothing the user may see.
        raise ValidationFailed(str(exc)) from None


@extend_schema(tags=["certificates"])
class CertificateAuthorityListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="certificate_authorities_list",
        responses={200: CertificateAuthorityOutputSerializer(many=True)},
    )
    def get(self, request):
        user = request.user
        organisation_ids = (
            None if user.is_superuser else organisation_ids_with(user=user, capability=Capability.MANAGE)
        )
        return paginated_response(
            request=request,
            view=self,
            queryset=service.ca_list(organisation_ids=organisation_ids).order_by("pk"),
            serializer_class=CertificateAuthorityOutputSerializer,
        )

    @extend_schema(
        operation_id="certificate_authorities_create",
        summary="Create a CA (we generate and keep its key, encrypted)",
        request=CertificateAuthorityInputSerializer,
        responses={201: CertificateAuthorityOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def post(self, request):
        data = CertificateAuthorityInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        ca = service.ca_create(
            organisation=_organisation(request.user, fields["organisation"]),
            name=fields["name"],
            purpose=fields["purpose"],
            valid_days=fields["valid_days"],
            key_type=fields["key_type"],
            actor=request.user,
        )
        return Response(CertificateAuthorityOutputSerializer(ca).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["certificates"])
class CertificateAuthorityImportApi(APIView):
    @extend_schema(
        operation_id="certificate_authorities_import",
        summary="Import a CA certificate (a trust anchor) or a CA with its key",
        request=CertificateAuthorityImportSerializer,
        responses={201: CertificateAuthorityOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def post(self, request):
        data = CertificateAuthorityImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        ca = service.ca_import(
            organisation=_organisation(request.user, fields["organisation"]),
            name=fields["name"],
            purpose=fields["purpose"],
            certificate_pem=fields["certificate_pem"],
            private_key_pem=fields.get("private_key_pem") or None,
            actor=request.user,
        )
        return Response(CertificateAuthorityOutputSerializer(ca).data, status=status.HTTP_201_CREATED)


class RolloutOutputSerializer(serializers.Serializer):
    accepted = serializers.ListField(child=serializers.CharField())
    refused = serializers.DictField(child=serializers.CharField())
    complete = serializers.BooleanField()


@extend_schema(tags=["certificates"])
class CsmsRootRolloutApi(APIView):
    @extend_schema(
        operation_id="certificate_authorities_rollout",
        summary="Install a CSMS root on every station of its organisation",
        description="Sends InstallCertificate CSMSRootCertificate (1.6: CentralSystemRootCertificate) to each "
        "station in turn and waits for each answer; `refused` names the stations that did not accept (their "
        "answer, an error, or not connected). Run it again until `complete`, and only then switch the server "
        "certificate (docs/certificates.md#rotating-the-csms-root).",
        request=None,
        responses={200: RolloutOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request, pk: int):
        user = request.user
        organisation_ids = (
            None if user.is_superuser else organisation_ids_with(user=user, capability=Capability.MANAGE)
        )
        ca = service.ca_list(organisation_ids=organisation_ids).filter(pk=pk).first()
        if ca is None:
            raise NotFound(f"Certificate authority {pk} not found.")
        report = service.csms_root_rollout(organisation=ca.organisation, certificate=ca, actor=user)
        return Response({"accepted": report.accepted, "refused": report.refused, "complete": report.complete})


# --- a station's certificates ------------------------------------------------------------------------------


@extend_schema(tags=["certificates"])
class StationCertificateListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="stations_certificates_list",
        parameters=[IDENTITY],
        responses={200: StationCertificateOutputSerializer(many=True), 404: NOT_FOUND},
    )
    def get(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, with_points=False)
        return paginated_response(
            request=request,
            view=self,
            queryset=service.station_certificate_list(station=station).order_by("-created_at", "-pk"),
            serializer_class=StationCertificateOutputSerializer,
        )


@extend_schema(tags=["certificates"])
class StationCertificateRevokeApi(APIView):
    @extend_schema(
        operation_id="stations_certificates_revoke",
        summary="Revoke a station certificate (refused at the next handshake, listed by its CA's CRL)",
        parameters=[IDENTITY],
        request=RevokeInputSerializer,
        responses={
            200: StationCertificateOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(description="Already revoked."),
        },
    )
    def post(self, request, identity: str, pk: int):
        station = station_access(
            user=request.user, identity=identity, capability=Capability.MANAGE, with_points=False
        )
        certificate = service.station_certificate_list(station=station).filter(pk=pk).first()
        if certificate is None:
            raise NotFound(f"Certificate {pk} not found.")
        data = RevokeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        revoked = service.certificate_revoke(
            certificate=certificate, reason=data.validated_data["reason"], actor=request.user
        )
        return Response(StationCertificateOutputSerializer(revoked).data)


@extend_schema(tags=["certificates"])
class StationCertificateRenewApi(APIView):
    @extend_schema(
        operation_id="stations_certificates_renew",
        summary="Ask the station for a new certificate now",
        description="Sends TriggerMessage SignChargingStationCertificate / SignV2GCertificate (2.0.1) or "
        "ExtendedTriggerMessage SignChargePointCertificate (1.6) and waits for the answer; the station then "
        "sends SignCertificate, which is signed and delivered with CertificateSigned.",
        parameters=[IDENTITY],
        request=RenewInputSerializer,
        responses={
            200: RenewOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(RenewOutputSerializer, description="The station is not connected."),
            502: OpenApiResponse(RenewOutputSerializer, description="The charger answered with a CALLERROR."),
            504: OpenApiResponse(RenewOutputSerializer, description="No answer within the timeout."),
        },
    )
    def post(self, request, identity: str):
        station = station_access(
            user=request.user, identity=identity, capability=Capability.MANAGE, with_points=False
        )
        data = RenewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        command = service.certificate_renew_now(
            station=station, actor=request.user, certificate_type=data.validated_data["certificate_type"]
        )
        body = {"action": command.action, "status": command.status, "response": command.response}
        if command.status == CommandStatus.ANSWERED:
            return Response(body)
        body["detail"] = command.error_description or command.error_code
        if command.status == CommandStatus.TIMED_OUT:
            return Response(body, status=status.HTTP_504_GATEWAY_TIMEOUT)
        if command.error_code in ("NotConnected", "NotDelivered"):
            return Response(body, status=status.HTTP_409_CONFLICT)
        return Response(body, status=status.HTTP_502_BAD_GATEWAY)
