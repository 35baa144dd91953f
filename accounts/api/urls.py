from django.urls import path

from accounts.api.views import OrganisationListApi

urlpatterns = [
    path("organisations/", OrganisationListApi.as_view(), name="organisation-list"),
]
