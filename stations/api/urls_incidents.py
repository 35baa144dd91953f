"""Incidents (stations/api/incidents.py)."""

from django.urls import path

from stations.api.incidents import (
    IncidentAcknowledgeApi,
    IncidentDetailApi,
    IncidentListApi,
    IncidentResolveApi,
)

urlpatterns = [
    path("incidents/", IncidentListApi.as_view(), name="incident-list"),
    path("incidents/<int:pk>/", IncidentDetailApi.as_view(), name="incident-detail"),
    path("incidents/<int:pk>/acknowledge/", IncidentAcknowledgeApi.as_view(), name="incident-acknowledge"),
    path("incidents/<int:pk>/resolve/", IncidentResolveApi.as_view(), name="incident-resolve"),
]
