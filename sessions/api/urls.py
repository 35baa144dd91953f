from django.urls import path

# Registers the `station_identity` path converter (cpms/api_urls.py includes it first anyway).
import stations.api.urls  # noqa: F401
from sessions.api.operations import RemoteStopApi
from sessions.api.site_access import SiteAccessRulesApi
from sessions.api.views import (
    IdTokenDetailApi,
    IdTokenListApi,
    ReservationCancelApi,
    ReservationDetailApi,
    ReservationListApi,
    SessionAnomalyListApi,
    SessionDetailApi,
    SessionEventListApi,
    SessionListApi,
    SessionMeterValueListApi,
    StationLocalListApi,
    StationLocalListSyncApi,
)

urlpatterns = [
    path(
        "stations/<station_identity:identity>/commands/remote-stop/",
        RemoteStopApi.as_view(),
        name="station-command-remote-stop",
    ),
    path("id-tokens/", IdTokenListApi.as_view(), name="id-token-list"),
    path("sites/<int:pk>/access-rules/", SiteAccessRulesApi.as_view(), name="site-access-rules"),
    path("id-tokens/<int:pk>/", IdTokenDetailApi.as_view(), name="id-token-detail"),
    path("sessions/", SessionListApi.as_view(), name="session-list"),
    path("sessions/<int:pk>/", SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<int:pk>/meter-values/", SessionMeterValueListApi.as_view(), name="session-meter-values"),
    path("sessions/<int:pk>/events/", SessionEventListApi.as_view(), name="session-event-list"),
    path("session-anomalies/", SessionAnomalyListApi.as_view(), name="session-anomaly-list"),
    path("reservations/", ReservationListApi.as_view(), name="reservation-list"),
    path("reservations/<int:pk>/", ReservationDetailApi.as_view(), name="reservation-detail"),
    path("reservations/<int:pk>/cancel/", ReservationCancelApi.as_view(), name="reservation-cancel"),
    path(
        "stations/<station_identity:identity>/local-list/",
        StationLocalListApi.as_view(),
        name="station-local-list",
    ),
    path(
        "stations/<station_identity:identity>/local-list/sync/",
        StationLocalListSyncApi.as_view(),
        name="station-local-list-sync",
    ),
]
