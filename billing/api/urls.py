from django.urls import include, path

urlpatterns = [
    path("", include("billing.api.urls_catalogue")),
    path("", include("billing.api.urls_exports")),
    path("", include("billing.api.urls_payments")),
]
