"""Payment provider secrets encrypted at rest (`cpms.secret_box`; docs/payments.md)."""

from cpms import secret_box

_PURPOSE = "cpms.payments.v1"


def secret_encrypt(plain: str) -> str:
    return secret_box.secret_encrypt(plain, purpose=_PURPOSE)


def secret_decrypt(stored: str) -> str:
    """The plain secret, or "" when none is stored or it was encrypted under another SECRET_KEY."""
    return secret_box.secret_decrypt(stored, purpose=_PURPOSE)
