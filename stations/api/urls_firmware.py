"""Firmware files, updates and campaigns, diagnostics and log uploads (stations/api/firmware.py)."""

from django.urls import path

from stations.api.firmware import (
    FirmwareCampaignDetailApi,
    FirmwareCampaignListApi,
    FirmwareFileDetailApi,
    FirmwareFileListApi,
    StationDiagnosticsApi,
    StationFirmwareUpdateApi,
    StationFirmwareUpdateListApi,
    StationUploadListApi,
    UploadFileApi,
)

# The station_identity converter is registered by stations/api/urls.py, which includes this module.
urlpatterns = [
    path("firmware-files/", FirmwareFileListApi.as_view(), name="firmware-file-list"),
    path("firmware-files/<int:pk>/", FirmwareFileDetailApi.as_view(), name="firmware-file-detail"),
    path(
        "stations/<station_identity:identity>/firmware-update/",
        StationFirmwareUpdateApi.as_view(),
        name="station-firmware-update",
    ),
    path(
        "stations/<station_identity:identity>/firmware-updates/",
        StationFirmwareUpdateListApi.as_view(),
        name="station-firmware-update-list",
    ),
    path("firmware-campaigns/", FirmwareCampaignListApi.as_view(), name="firmware-campaign-list"),
    path(
        "firmware-campaigns/<int:pk>/", FirmwareCampaignDetailApi.as_view(), name="firmware-campaign-detail"
    ),
    path(
        "stations/<station_identity:identity>/diagnostics/",
        StationDiagnosticsApi.as_view(),
        name="station-diagnostics",
    ),
    path(
        "stations/<station_identity:identity>/uploads/",
        StationUploadListApi.as_view(),
        name="station-upload-list",
    ),
    path("uploads/<int:pk>/file/", UploadFileApi.as_view(), name="upload-file"),
]
