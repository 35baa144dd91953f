from django.urls import path

from cpms.pay import views

app_name = "pay"

urlpatterns = [
    path("c/<str:code>/", views.evse_page, name="evse"),
    path("pay/<str:key>/", views.live_page, name="live"),
    path("pay/<str:key>/status/", views.live_status, name="live-status"),
    path("pay/<str:key>/confirm/", views.confirm_view, name="confirm"),
    path("pay/<str:key>/stop/", views.stop_view, name="stop"),
    path("pay/<str:key>/receipt/", views.receipt_page, name="receipt"),
    path("pay/<str:key>/receipt.pdf", views.receipt_pdf_view, name="receipt-pdf"),
    path("pay/webhooks/<int:organisation_id>/stripe/", views.stripe_webhook, name="webhook-stripe"),
]
