"""The drivers' public pages: an EVSE's page from its QR code (price, pay), the live page of a paid session,
its receipt, and the payment provider's webhooks. No account: a payment's pages are reached by the secret in
their URL (billing/services/payments.py)."""
