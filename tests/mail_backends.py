"""Email backends that fail the way real transports do, for sending tests."""

import smtplib

from django.core.mail.backends.locmem import EmailBackend as LocmemBackend


class FlakyBackend(LocmemBackend):
    """locmem, but addresses can be made to fail: set the class attributes in a test.

    ``rejected``: permanent 550 refusal; ``busy``: temporary 451; ``timeout``: the
    server took the message and never answered; ``down_after``: after this many
    messages the connection is refused; ``on_send``: called before each message.
    """

    rejected: set[str] = set()
    busy: set[str] = set()
    timeout: set[str] = set()
    down_after: int | None = None
    on_send = None
    sent_count = 0

    @classmethod
    def reset(cls) -> None:
        cls.rejected, cls.busy, cls.timeout = set(), set(), set()
        cls.down_after, cls.on_send, cls.sent_count = None, None, 0

    def send_messages(self, messages):
        for message in messages:
            [to] = message.to
            if FlakyBackend.on_send:
                FlakyBackend.on_send(message)
            if (
                FlakyBackend.down_after is not None
                and FlakyBackend.sent_count >= FlakyBackend.down_after
            ):
                raise smtplib.SMTPConnectError(421, b"service not available")
            if to in FlakyBackend.rejected:
                raise smtplib.SMTPRecipientsRefused({to: (550, b"no such user")})
            if to in FlakyBackend.busy:
                raise smtplib.SMTPRecipientsRefused({to: (451, b"try again later")})
            if to in FlakyBackend.timeout:
                raise TimeoutError("timed out waiting for the server's answer")
            FlakyBackend.sent_count += 1
        return super().send_messages(messages)
