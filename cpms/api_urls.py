from django.urls import include, path
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView


class ApiRootApi(APIView):
    """The entry point: where the collections are and where the documentation is. No data."""

    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request):
        def url(name: str) -> str:
            return reverse(name, request=request)

        return Response(
            {
                "organisations": url("organisation-list"),
                "sites": url("site-list"),
                "stations": url("station-list"),
                "id_tokens": url("id-token-list"),
                "sessions": url("session-list"),
                "security_events": url("security-event-list"),
                "session_anomalies": url("session-anomaly-list"),
                "schema": url("schema"),
                "docs": url("api-docs"),
            }
        )


urlpatterns = [
    path("", ApiRootApi.as_view(), name="api-root"),
    path("", include("accounts.api.urls")),
    path("", include("stations.api.urls_users")),
    path("", include("stations.api.urls")),
    path("", include("stations.api.urls_incidents")),
    path("", include("sessions.api.urls")),
    path("", include("sessions.api.urls_waitlists")),
    path("", include("billing.api.urls")),
    path("", include("billing.api.urls_kpis")),
    path("", include("energy.api.urls")),
    path("", include("cpms.ocpi.api.urls")),
]
