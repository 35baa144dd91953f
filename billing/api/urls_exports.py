from django.urls import path

from billing.api.exports import ExportJobDetailApi, ExportJobDownloadApi, ExportJobListApi, ExportStreamApi

urlpatterns = [
    path("exports/", ExportJobListApi.as_view(), name="export-job-list"),
    path("exports/<int:pk>/", ExportJobDetailApi.as_view(), name="export-job-detail"),
    path("exports/<int:pk>/download/", ExportJobDownloadApi.as_view(), name="export-job-download"),
    path("exports/<str:kind>.csv", ExportStreamApi.as_view(), name="export-stream"),
]
