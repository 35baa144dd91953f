from django.urls import path

from sessions.api.views import (
    IdTokenDetailApi,
    IdTokenListApi,
    SessionAnomalyListApi,
    SessionDetailApi,
    SessionEventListApi,
    SessionListApi,
    SessionMeterValueListApi,
)

urlpatterns = [
    path("id-tokens/", IdTokenListApi.as_view(), name="id-token-list"),
    path("id-tokens/<int:pk>/", IdTokenDetailApi.as_view(), name="id-token-detail"),
    path("sessions/", SessionListApi.as_view(), name="session-list"),
    path("sessions/<int:pk>/", SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<int:pk>/meter-values/", SessionMeterValueListApi.as_view(), name="session-meter-values"),
    path("sessions/<int:pk>/events/", SessionEventListApi.as_view(), name="session-event-list"),
    path("session-anomalies/", SessionAnomalyListApi.as_view(), name="session-anomaly-list"),
]
