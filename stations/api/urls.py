from django.urls import include, path, register_converter

from stations.api.commands import CommandDetailApi, CommandListApi, StationCommandListApi, StationOcppCallApi
from stations.api.jobs import (
    JobDetailApi,
    JobListApi,
    ReadConfigurationApi,
    TemplateApplyApi,
    TemplateDetailApi,
    TemplateListApi,
)
from stations.api.security_profile import SecurityProfileUpgradeApi
from stations.api.views import (
    SecurityEventListApi,
    SiteDetailApi,
    SiteListApi,
    StationDetailApi,
    StationEventListApi,
    StationListApi,
    StationSecurityEventListApi,
    StationStatusHistoryApi,
    StationVariableListApi,
)


class StationIdentityConverter:
    """One URL segment, whatever it contains: identities may hold '.', '-', '_', ':' and more
    (docs/contract.md#resources); only '/' cannot appear in them."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(StationIdentityConverter, "station_identity")

urlpatterns = [
    path("sites/", SiteListApi.as_view(), name="site-list"),
    path("sites/<int:pk>/", SiteDetailApi.as_view(), name="site-detail"),
    path("stations/", StationListApi.as_view(), name="station-list"),
    path("stations/<station_identity:identity>/", StationDetailApi.as_view(), name="station-detail"),
    path(
        "stations/<station_identity:identity>/variables/",
        StationVariableListApi.as_view(),
        name="station-variable-list",
    ),
    path(
        "stations/<station_identity:identity>/security-events/",
        StationSecurityEventListApi.as_view(),
        name="station-security-event-list",
    ),
    path(
        "stations/<station_identity:identity>/events/",
        StationEventListApi.as_view(),
        name="station-event-list",
    ),
    path(
        "stations/<station_identity:identity>/status-history/",
        StationStatusHistoryApi.as_view(),
        name="station-status-history",
    ),
    path("security-events/", SecurityEventListApi.as_view(), name="security-event-list"),
    path(
        "stations/<station_identity:identity>/ocpp/<str:action>/",
        StationOcppCallApi.as_view(),
        name="station-ocpp-call",
    ),
    path(
        "stations/<station_identity:identity>/commands/",
        StationCommandListApi.as_view(),
        name="station-command-list",
    ),
    path("commands/", CommandListApi.as_view(), name="command-list"),
    path("commands/<int:pk>/", CommandDetailApi.as_view(), name="command-detail"),
    path("configuration-templates/", TemplateListApi.as_view(), name="configuration-template-list"),
    path(
        "configuration-templates/<int:pk>/", TemplateDetailApi.as_view(), name="configuration-template-detail"
    ),
    path(
        "configuration-templates/<int:pk>/apply/",
        TemplateApplyApi.as_view(),
        name="configuration-template-apply",
    ),
    path("jobs/", JobListApi.as_view(), name="job-list"),
    path("jobs/read-configuration/", ReadConfigurationApi.as_view(), name="job-read-configuration"),
    path("jobs/<int:pk>/", JobDetailApi.as_view(), name="job-detail"),
    path("", include("stations.api.urls_operations")),
    path("", include("stations.api.urls_firmware")),
    path("", include("stations.api.urls_certificates")),
    path(
        "stations/<station_identity:identity>/security-profile/upgrade/",
        SecurityProfileUpgradeApi.as_view(),
        name="station-security-profile-upgrade",
    ),
]
