"""Headers for outgoing mail that make each ESP echo our message id back in its webhooks."""

from __future__ import annotations

import json

MESSAGE_TAG = "dripline_message"  # the key our message id travels under; each ESP parser reads it


def tag_headers(provider: str, message_pk: str) -> dict[str, str]:
    """What to add to a message sent through ``provider``; each parse() reads it back."""
    if provider == "sendgrid":  # unique_args come back as top-level keys of every event
        return {"X-SMTPAPI": json.dumps({"unique_args": {MESSAGE_TAG: message_pk}})}
    if provider == "mailgun":  # returned as event-data["user-variables"]
        return {"X-Mailgun-Variables": json.dumps({MESSAGE_TAG: message_pk})}
    if provider == "postmark":  # returned as Metadata
        return {f"X-PM-Metadata-{MESSAGE_TAG}": message_pk}
    if provider == "ses":
        # SES replaces our Message-ID with its own; message tags come back as mail.tags in
        # event publishing (a configuration set is needed), and SES strips the header.
        return {"X-SES-MESSAGE-TAGS": f"{MESSAGE_TAG}={message_pk}"}
    if provider == "resend":
        # No documented tag header over SMTP: its events name our message by subject, address
        # and time instead (sequences.intake.ours).
        return {}
    raise ValueError(f"unknown ESP {provider!r}")
