"""Version-neutral operations on a station (stations/api/operations.py; remote-stop is registered by
sessions/api/urls.py: it resolves a session id)."""

from django.urls import path

from stations.api.operations import (
    ChangeAvailabilityApi,
    ClearCacheApi,
    DataTransferApi,
    DisplayPaymentUrlApi,
    GetConfigurationApi,
    RemoteStartApi,
    ResetApi,
    SetConfigurationApi,
    TriggerMessageApi,
    UnlockApi,
)

OPERATIONS = {
    "remote-start": RemoteStartApi,
    "reset": ResetApi,
    "unlock": UnlockApi,
    "change-availability": ChangeAvailabilityApi,
    "get-configuration": GetConfigurationApi,
    "set-configuration": SetConfigurationApi,
    "trigger-message": TriggerMessageApi,
    "clear-cache": ClearCacheApi,
    "data-transfer": DataTransferApi,
    "display-payment-url": DisplayPaymentUrlApi,
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
