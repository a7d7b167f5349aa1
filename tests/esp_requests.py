"""Webhook requests as each ESP sends them, in its documented format, signed with test keys.

The signing here is written from the providers' documentation, not shared with sequences/esp, so
a mistake in either shows up as a refused signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

from certificates import self_signed
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sequences.mail.tags import MESSAGE_TAG

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
POSTMARK_AUTH = ("postmark-hook", "s3cret-pass")
RESEND_SECRET = "whsec_" + base64.b64encode(b"resend test secret, 24 b!").decode()
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SCANNER_UA = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


@dataclass(frozen=True)
class Signed:
    """One POST as the ESP would make it."""

    provider: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def with_body(self, body: bytes) -> Signed:
        """The same signature headers over another body: what a tampered request looks like."""
        return replace(self, body=body)

    def tampered(self) -> Signed:
        return self.with_body(self.body.replace(b"example.com", b"example.org", 1))


@cache
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@cache
def sns_identity() -> tuple[rsa.RSAPrivateKey, bytes]:
    """A self-signed certificate standing in for the one AWS serves at CERT_URL."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = self_signed(key, "sns.amazonaws.com", days=30)
    return key, certificate.public_bytes(serialization.Encoding.PEM)


def settings_overrides() -> dict[str, object]:
    public = (
        sendgrid_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {
        "DRIPLINE_SENDGRID_WEBHOOK_KEY": base64.b64encode(public).decode(),
        "DRIPLINE_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
        "DRIPLINE_SES_TOPIC_ARNS": f"arn:aws:sns:eu-west-1:123456789012:other, {TOPIC}",
        "DRIPLINE_POSTMARK_WEBHOOK_USER": POSTMARK_AUTH[0],
        "DRIPLINE_POSTMARK_WEBHOOK_PASSWORD": POSTMARK_AUTH[1],
        "DRIPLINE_RESEND_WEBHOOK_SECRET": RESEND_SECRET,
    }


class CertificateServer:
    """The fetcher seam: serves the test certificate and records subscription confirmations."""

    def __init__(self) -> None:
        self.certificates = {CERT_URL: sns_identity()[1]}
        self.fetched: list[str] = []
        self.confirmed: list[str] = []

    async def certificate(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.certificates[url]

    async def confirm(self, url: str) -> None:
        self.confirmed.append(url)


def without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


def _id() -> str:
    return uuid.uuid4().hex


# SendGrid: a JSON array; the signature is ECDSA P-256 / SHA-256 over timestamp + raw body.


def sendgrid_event(kind: str, email: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": email,
        "timestamp": int(time.time()),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": kind,
        "category": ["onboarding"],
        "sg_event_id": base64.b64encode(uuid.uuid4().bytes).decode(),
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **fields,
    }


def sendgrid(events: list[Any], *, at: float | None = None) -> Signed:
    return sendgrid_raw(json.dumps(events).encode(), at=at)


def sendgrid_raw(body: bytes, *, at: float | None = None) -> Signed:
    timestamp = str(int(at if at is not None else time.time()))
    signature = sendgrid_key().sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return Signed("sendgrid", body, headers)


# Mailgun: {"signature": {timestamp, token, signature}, "event-data": {...}};
# the signature is hex HMAC-SHA256 of timestamp + token with the webhook signing key.


def mailgun_event(kind: str, email: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": _id()[:22],
        "timestamp": time.time(),
        "log-level": "info",
        "event": kind,
        "recipient": email,
        "recipient-domain": email.rpartition("@")[2],
        "message": {"headers": {"message-id": "20130503182626.18666.16540@mg.acme.test"}},
        "user-variables": {},
        **fields,
    }


def mailgun(
    event_data: dict[str, Any],
    *,
    at: float | None = None,
    key: str = MAILGUN_KEY,
    parent_key: str | None = None,
) -> Signed:
    """``parent_key``: a subaccount's event, signed by it and by the primary account."""
    timestamp, token = str(int(at if at is not None else time.time())), _id() + _id()[:18]
    signature = {"timestamp": timestamp, "token": token, "signature": _hex(key, timestamp + token)}
    if parent_key is not None:
        signature["parent-signature"] = _hex(parent_key, timestamp + token)
    body = json.dumps({"signature": signature, "event-data": event_data}).encode()
    return Signed("mailgun", body, {"Content-Type": "application/json"})


def _hex(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


# Amazon SES through SNS: the SES record is the JSON string in Message; SNS signs the
# documented string-to-sign with RSA, SHA1 (SignatureVersion 1) or SHA256 (2).


def ses_record(
    kind: str, email: str, *, notification: bool = False, **detail: Any
) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    mail = {
        "timestamp": now,
        "source": "ops@acme.test",
        "messageId": "0100017c1f7d5f3e-" + _id(),
        "destination": [email],
        "headersTruncated": False,
        "commonHeaders": {"from": ["ops@acme.test"], "to": [email], "subject": "Hello"},
        "tags": {"ses:configuration-set": ["dripline"]},
    }
    key = "notificationType" if notification else "eventType"
    return {key: kind, "mail": mail, **detail}


def ses_bounce(email: str, bounce_type: str, **options: Any) -> dict[str, Any]:
    recipient = {
        "emailAddress": email,
        "action": "failed",
        "status": "5.1.1",
        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
    }
    bounce = {
        "bounceType": bounce_type,
        "bounceSubType": "General",
        "bouncedRecipients": [recipient],
        "timestamp": datetime.now(UTC).isoformat(),
        "feedbackId": "0100017c-" + _id(),
    }
    return ses_record("Bounce", email, bounce=bounce, **options)


def sns(
    message: dict[str, Any] | str,
    *,
    kind: str = "Notification",
    version: str = "2",
    at: datetime | None = None,
    topic: str = TOPIC,
    cert_url: str = CERT_URL,
    subject: str | None = None,
    subscribe_url: str | None = None,
) -> Signed:
    text = message if isinstance(message, str) else json.dumps(message)
    envelope: dict[str, Any] = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": text,
        "Timestamp": (at or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
    }
    if subject is not None:
        envelope["Subject"] = subject
    if kind == "SubscriptionConfirmation":
        envelope["Token"] = "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92"
        envelope["SubscribeURL"] = subscribe_url or (
            f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}"
            f"&Token={envelope['Token']}"
        )
    envelope["Signature"] = _sns_signature(envelope, version)
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": kind}
    return Signed("ses", json.dumps(envelope).encode(), headers)


def _sns_signature(envelope: dict[str, Any], version: str) -> str:
    if envelope["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{envelope[k]}\n" for k in keys if k in envelope)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = sns_identity()[0].sign(text.encode(), padding.PKCS1v15(), algorithm)
    return base64.b64encode(signature).decode()


# Postmark: one JSON record per POST, authenticated by HTTP basic auth only.


def postmark_record(kind: str, email: str, **fields: Any) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat()
    record: dict[str, Any] = {
        "RecordType": kind,
        "MessageStream": "outbound",
        "ServerID": 23,
        "MessageID": str(uuid.uuid4()),
        "Tag": "onboarding",
        "Metadata": {},
    }
    if kind in ("Bounce", "SpamComplaint"):
        record.update(
            ID=4323372036854775807,
            Email=email,
            BouncedAt=at,
            Description="The server was unable to deliver your message (ex: unknown user).",
            Details="smtp;550 5.1.1 The email account that you tried to reach does not exist",
        )
    else:
        stamp = {"Delivery": "DeliveredAt", "SubscriptionChange": "ChangedAt"}
        record.update({"Recipient": email, stamp.get(kind, "ReceivedAt"): at})
    return {**record, **fields}


def postmark(record: dict[str, Any], *, auth: tuple[str, str] = POSTMARK_AUTH) -> Signed:
    credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {credentials}"}
    return Signed("postmark", json.dumps(record).encode(), headers)


# Resend, delivered by Svix: base64 HMAC-SHA256 of "id.timestamp.body" with the decoded
# whsec_ secret, sent as "v1,<signature>".


def resend_payload(kind: str, email: str | list[str], **data: Any) -> dict[str, Any]:
    created = datetime.now(UTC).isoformat()
    return {
        "type": kind,
        "created_at": created,
        "data": {
            "created_at": created,
            "email_id": str(uuid.uuid4()),
            "from": "Ops <ops@acme.test>",
            "to": email if isinstance(email, list) else [email],
            "subject": "Hello",
            **data,
        },
    }


def resend(kind: str, email: str, *, at: float | None = None, **data: Any) -> Signed:
    return svix(json.dumps(resend_payload(kind, email, **data)).encode(), at=at)


def svix(body: bytes, *, at: float | None = None, msg_id: str | None = None) -> Signed:
    msg_id = msg_id or f"msg_{_id()[:27]}"
    timestamp = str(int(at if at is not None else time.time()))
    secret = base64.b64decode(RESEND_SECRET.removeprefix("whsec_"))
    digest = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": f"v1,{base64.b64encode(b'an older secret').decode()} "
        f"v1,{base64.b64encode(digest).decode()}",
    }
    return Signed("resend", body, headers)


# Naming our message: each ESP echoes the tag header we add (sequences.mail.tags) in its own
# place; the payload builders above name mail another system sent.

TAG = MESSAGE_TAG  # the key sequences.mail.tags puts our message id under


def tagged(provider: str, payload: dict[str, Any], pk: str) -> dict[str, Any]:
    """The payload as the ESP reports an event about mail that carried our tag."""
    if provider == "sendgrid":  # X-SMTPAPI unique_args come back as top-level keys
        return {**payload, TAG: pk}
    if provider == "mailgun":  # X-Mailgun-Variables come back as user-variables
        return {**payload, "user-variables": {TAG: pk}}
    if provider == "postmark":  # X-PM-Metadata-* come back as Metadata
        return {**payload, "Metadata": {TAG: pk}}
    if provider == "ses":  # X-SES-MESSAGE-TAGS come back as mail.tags, each a list
        mail = {**payload["mail"], "tags": {**payload["mail"]["tags"], TAG: [pk]}}
        return {**payload, "mail": mail}
    if provider == "resend":  # tags, as {"name": "value"} in Resend's samples
        return {**payload, "data": {**payload["data"], "tags": {TAG: pk}}}
    raise ValueError(provider)


def signed(provider: str, payload: dict[str, Any]) -> Signed:
    """One request carrying ``payload`` (SendGrid: a batch of one)."""
    if provider == "sendgrid":
        return sendgrid([payload])
    if provider == "mailgun":
        return mailgun(payload)
    if provider == "ses":
        return sns(payload)
    if provider == "postmark":
        return postmark(payload)
    return svix(json.dumps(payload).encode())
