"""Portal URLs about sites and stations (namespace `portal`)."""

from django.urls import path

import stations.api.urls  # noqa: F401 (registers the `station_identity` path converter)
from stations.views import portal

urlpatterns = [
    path("", portal.overview, name="overview"),
    path("sites/<int:pk>/", portal.site_detail, name="site-detail"),
    path("stations/", portal.station_list_page, name="station-list"),
    path("stations/<station_identity:identity>/", portal.station_detail, name="station-detail"),
    path(
        "stations/<station_identity:identity>/commands/",
        portal.station_commands_page,
        name="station-commands",
    ),
    path(
        "stations/<station_identity:identity>/messages/",
        portal.station_messages_page,
        name="station-messages",
    ),
    path(
        "stations/<station_identity:identity>/configuration/",
        portal.station_configuration_page,
        name="station-configuration",
    ),
    path(
        "stations/<station_identity:identity>/command/<slug:operation>/",
        portal.station_command,
        name="station-command",
    ),
]
