from django.urls import path, register_converter

from stations.api.views import SiteDetailApi, SiteListApi, StationDetailApi, StationListApi


class StationIdentityConverter:
    """One URL segment, whatever it contains: identities may hold '.', '-', '_', ':' and more (CONTRACT.md);
    only '/' cannot appear in them."""

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
]
