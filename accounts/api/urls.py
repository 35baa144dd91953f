from django.urls import path

from accounts.api.views import AuditRecordListApi, OrganisationListApi

urlpatterns = [
    path("organisations/", OrganisationListApi.as_view(), name="organisation-list"),
    path("audit-records/", AuditRecordListApi.as_view(), name="audit-record-list"),
]
