from django.urls import path

# Registers the `station_identity` path converter (cpms/api_urls.py includes it first anyway).
import stations.api.urls  # noqa: F401
from energy.api.views import (
    EvseElectricalApi,
    EvseProfileCheckApi,
    GridNodeDetailApi,
    GridNodeScheduleApi,
    GridNodeSignalListApi,
    SiteEnergyApi,
    SiteGridNodeListApi,
    StationChargingProfileListApi,
)

urlpatterns = [
    path("sites/<int:pk>/grid-nodes/", SiteGridNodeListApi.as_view(), name="site-grid-node-list"),
    path("sites/<int:pk>/energy/", SiteEnergyApi.as_view(), name="site-energy"),
    path("grid-nodes/<int:pk>/", GridNodeDetailApi.as_view(), name="grid-node-detail"),
    path("grid-nodes/<int:pk>/schedule/", GridNodeScheduleApi.as_view(), name="grid-node-schedule"),
    path("grid-nodes/<int:pk>/signals/", GridNodeSignalListApi.as_view(), name="grid-node-signal-list"),
    path(
        "stations/<station_identity:identity>/evses/<int:evse_id>/electrical/",
        EvseElectricalApi.as_view(),
        name="station-evse-electrical",
    ),
    path(
        "stations/<station_identity:identity>/evses/<int:evse_id>/profile-check/",
        EvseProfileCheckApi.as_view(),
        name="station-evse-profile-check",
    ),
    path(
        "stations/<station_identity:identity>/charging-profiles/",
        StationChargingProfileListApi.as_view(),
        name="station-charging-profile-list",
    ),
]
