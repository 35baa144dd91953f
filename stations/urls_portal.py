"""Portal URLs about sites and stations (namespace `portal`)."""

from django.urls import path

from stations.views import portal

urlpatterns = [
    path("", portal.overview, name="overview"),
]
