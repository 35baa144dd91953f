"""Portal URLs about incidents (namespace `portal`)."""

from django.urls import path

from stations.views import incidents

urlpatterns = [
    path("incidents/", incidents.incident_list_page, name="incident-list"),
    path("incidents/<int:pk>/", incidents.incident_detail, name="incident-detail"),
    path("incidents/<int:pk>/acknowledge/", incidents.incident_acknowledge_view, name="incident-acknowledge"),
    path("incidents/<int:pk>/resolve/", incidents.incident_resolve_view, name="incident-resolve"),
]
