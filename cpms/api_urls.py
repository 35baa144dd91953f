from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api.urls")),
    path("", include("stations.api.urls")),
    path("", include("sessions.api.urls")),
]
