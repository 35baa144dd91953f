from django.urls import path

from accounts.api.views import AuditRecordListApi, OrganisationListApi, UserDetailApi, UserListApi

urlpatterns = [
    path("organisations/", OrganisationListApi.as_view(), name="organisation-list"),
    path("users/", UserListApi.as_view(), name="user-list"),
    path("users/<int:pk>/", UserDetailApi.as_view(), name="user-detail"),
    path("audit-records/", AuditRecordListApi.as_view(), name="audit-record-list"),
]
