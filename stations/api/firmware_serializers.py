"""Input and output of the firmware, campaign and upload endpoints (stations/api/firmware.py)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from cpms.api import StrictInputSerializer
from stations.api.commands import CommandOutputSerializer
from stations.enums import UploadKind
from stations.models import CommandJob, CommandJobTarget, DiagnosticsUpload, FirmwareFile, FirmwareUpdate
from stations.services.firmware import CERTIFICATE_MAX_LENGTH, SIGNATURE_MAX_LENGTH, firmware_download_url

MAX_CAMPAIGN_STATIONS = 10_000

# --- firmware files ---------------------------------------------------------------------------------


class FirmwareFileOutputSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.username", default=None, allow_null=True)
    signed = serializers.SerializerMethodField(help_text="Whether a signature and its certificate are set.")
    download_url = serializers.SerializerMethodField(
        help_text="Where chargers download the image (no credentials: the token in it is the credential)."
    )

    class Meta:
        model = FirmwareFile
        fields = [
            "id",
            "organisation",
            "name",
            "version",
            "size_bytes",
            "sha256",
            "signed",
            "download_url",
            "uploaded_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_signed(self, firmware: FirmwareFile) -> bool:
        return bool(firmware.signature and firmware.signing_certificate)

    def get_download_url(self, firmware: FirmwareFile) -> str:
        return firmware_download_url(firmware)


class FirmwareFileInputSerializer(StrictInputSerializer):
    """Types only; the rules (permissions, empty files) are the service's."""

    organisation = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    version = serializers.CharField(max_length=50)
    file = serializers.FileField(help_text="The firmware image.")
    signature = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=SIGNATURE_MAX_LENGTH,
        help_text="Base64 signature of the image (signed firmware: 1.6 Security Whitepaper, 2.0.1).",
    )
    signing_certificate = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=CERTIFICATE_MAX_LENGTH,
        help_text="PEM certificate the image was signed with.",
    )


# --- firmware updates -------------------------------------------------------------------------------


class FirmwareUpdateOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity")
    firmware_version = serializers.CharField(source="firmware.version")
    status = serializers.CharField(
        help_text="The charger's answer (Accepted, Rejected, ...), then the last FirmwareStatus it reported; "
        "empty when the request did not reach it (see `command`)."
    )
    command = CommandOutputSerializer(allow_null=True)

    class Meta:
        model = FirmwareUpdate
        fields = [
            "id",
            "station",
            "firmware",
            "firmware_version",
            "job",
            "request_id",
            "status",
            "command",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class FirmwareUpdateInputSerializer(StrictInputSerializer):
    firmware_id = serializers.IntegerField(help_text="A firmware file of the station's organisation.")
    retrieve_at = serializers.DateTimeField(
        required=False, help_text="When the station shall download the image (default: now)."
    )


class FirmwareUpdateStartOutputSerializer(serializers.Serializer):
    detail = serializers.CharField(required=False, help_text="Why the command did not succeed.")
    firmware_update = FirmwareUpdateOutputSerializer()
    command = CommandOutputSerializer()


# --- campaigns --------------------------------------------------------------------------------------


class FirmwareCampaignInputSerializer(StrictInputSerializer):
    firmware_id = serializers.IntegerField()
    stations = serializers.ListField(
        child=serializers.CharField(max_length=48, trim_whitespace=False),
        required=False,
        min_length=1,
        max_length=MAX_CAMPAIGN_STATIONS,
        help_text="Station identities.",
    )
    site_id = serializers.IntegerField(required=False, help_text="Every station of this site.")
    retrieve_at = serializers.DateTimeField(
        required=False, help_text="When the stations shall download the image (default: when sent)."
    )

    def validate(self, attrs):
        if ("stations" in attrs) == ("site_id" in attrs):
            raise serializers.ValidationError("Give either 'stations' (identities) or 'site_id'.")
        return attrs


class FirmwareCampaignTargetOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity")
    firmware_status = serializers.CharField(
        allow_null=True,
        help_text="The last status of this campaign's update on the station (answer, then FirmwareStatus).",
    )

    class Meta:
        model = CommandJobTarget
        fields = ["station", "status", "detail", "finished_at", "firmware_status"]
        read_only_fields = fields


class FirmwareCampaignOutputSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    progress = serializers.SerializerMethodField(help_text="Finished targets / total, 0..1.")

    class Meta:
        model = CommandJob
        fields = [
            "id",
            "organisation",
            "firmware",
            "status",
            "total",
            "done_count",
            "failed_count",
            "progress",
            "error",
            "attempts",
            "created_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, job: CommandJob) -> float:
        return round((job.done_count + job.failed_count) / job.total, 4) if job.total else 1.0


class FirmwareCampaignDetailOutputSerializer(FirmwareCampaignOutputSerializer):
    """`targets` is set by the view (stations.services.firmware.firmware_campaign_targets)."""

    targets = FirmwareCampaignTargetOutputSerializer(many=True, source="campaign_targets")

    class Meta(FirmwareCampaignOutputSerializer.Meta):
        fields = [*FirmwareCampaignOutputSerializer.Meta.fields, "targets"]
        read_only_fields = fields


# --- diagnostics and log uploads --------------------------------------------------------------------


class DiagnosticsInputSerializer(StrictInputSerializer):
    kind = serializers.ChoiceField(
        choices=UploadKind.choices,
        help_text="diagnostics: 1.6 GetDiagnostics; log: GetLog (2.0.1, and 1.6 with the Security Whitepaper).",
    )
    log_type = serializers.ChoiceField(
        choices=[("DiagnosticsLog", "DiagnosticsLog"), ("SecurityLog", "SecurityLog")],
        required=False,
        help_text="GetLog's logType (default DiagnosticsLog).",
    )
    start = serializers.DateTimeField(required=False, help_text="Oldest information to include.")
    stop = serializers.DateTimeField(required=False, help_text="Latest information to include.")


class DiagnosticsUploadOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity")
    requested_by = serializers.CharField(source="requested_by.username", default=None, allow_null=True)
    status = serializers.CharField(
        help_text="The charger's answer, then the last upload status it reported (Uploading, Uploaded, ...)."
    )
    file_name = serializers.CharField(help_text="The name the charger gave the file.")
    file_url = serializers.SerializerMethodField(help_text="Download of the received file; null until then.")
    command = CommandOutputSerializer(allow_null=True)

    class Meta:
        model = DiagnosticsUpload
        fields = [
            "id",
            "station",
            "kind",
            "status",
            "request_id",
            "file_name",
            "size_bytes",
            "uploaded_at",
            "file_url",
            "requested_by",
            "command",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_file_url(self, upload: DiagnosticsUpload) -> str | None:
        if upload.uploaded_at is None:
            return None
        return reverse("upload-file", kwargs={"pk": upload.pk}, request=self.context.get("request"))


class DiagnosticsRequestOutputSerializer(serializers.Serializer):
    detail = serializers.CharField(required=False, help_text="Why the command did not succeed.")
    upload = DiagnosticsUploadOutputSerializer()
    command = CommandOutputSerializer()
