from django.urls import path

from sessions.api.views import IdTokenDetailApi, IdTokenListApi, SessionDetailApi, SessionListApi

urlpatterns = [
    path("id-tokens/", IdTokenListApi.as_view(), name="id-token-list"),
    path("id-tokens/<int:pk>/", IdTokenDetailApi.as_view(), name="id-token-detail"),
    path("sessions/", SessionListApi.as_view(), name="session-list"),
    path("sessions/<int:pk>/", SessionDetailApi.as_view(), name="session-detail"),
]
