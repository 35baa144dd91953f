from django.urls import path

from billing.api.payments import PaymentDetailApi, PaymentListApi, PaymentRefundApi, PaymentSettingsApi

urlpatterns = [
    path("payments/", PaymentListApi.as_view(), name="payment-list"),
    path("payments/<int:pk>/", PaymentDetailApi.as_view(), name="payment-detail"),
    path("payments/<int:pk>/refund/", PaymentRefundApi.as_view(), name="payment-refund"),
    path(
        "organisations/<int:pk>/payment-settings/",
        PaymentSettingsApi.as_view(),
        name="organisation-payment-settings",
    ),
]
