"""Version-neutral operations on a station (stations/api/operations.py)."""

from django.urls import path

from stations.api.operations import (
    ChangeAvailabilityApi,
    ClearCacheApi,
    DataTransferApi,
    GetConfigurationApi,
    RemoteStartApi,
    RemoteStopApi,
    ResetApi,
    SetConfigurationApi,
    TriggerMessageApi,
    UnlockApi,
)

OPERATIONS = {
    "remote-start": RemoteStartApi,
    "remote-stop": RemoteStopApi,
    "reset": ResetApi,
    "unlock": UnlockApi,
    "change-availability": ChangeAvailabilityApi,
    "get-configuration": GetConfigurationApi,
    "set-configuration": SetConfigurationApi,
    "trigger-message": TriggerMessageApi,
    "clear-cache": ClearCacheApi,
    "data-transfer": DataTransferApi,
}

# The station_identity converter is registered by stations/api/urls.py, which includes this module.
urlpatterns = [
    path(
        f"stations/<station_identity:identity>/commands/{operation}/",
        view.as_view(),
        name=f"station-command-{operation}",
    )
    for operation, view in OPERATIONS.items()
]
