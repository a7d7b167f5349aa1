"""Amazon SNS over HTTPS: the envelope, its RSA signature (versions 1 and 2), the handshake URLs.

Certificates are trusted only from ``https://sns.<region>.amazonaws.com[.cn]/...pem``: fetched
over TLS from AWS's own host, the certificate needs no chain of its own checked here.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sequences.intake.esp.common import WebhookRejected, as_object, load_json, need

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
TYPES = {"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"}
# The documented string-to-sign: these keys in this order, each as "Key\nvalue\n".
NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def envelope(raw_body: bytes) -> dict[str, Any]:
    env = as_object(load_json(raw_body), "body")
    if need(env, "Type", str) not in TYPES:
        raise WebhookRejected(f"unknown SNS message type {env['Type']!r}")
    return env


def sns_url(url: str, what: str) -> str:
    """Only AWS's own SNS endpoints: anything else would let a forger pick the key or the target."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.port not in (None, 443):
        raise WebhookRejected(f"{what} must be an https URL")
    if not SNS_HOST.match(parts.hostname or ""):
        raise WebhookRejected(f"{what} host {parts.hostname!r} is not an SNS endpoint")
    return url


def certificate_url(env: dict[str, Any]) -> str:
    url = sns_url(_text(env, "SigningCertURL"), "SigningCertURL")
    if not urlsplit(url).path.endswith(".pem"):
        raise WebhookRejected("SigningCertURL is not a .pem certificate")
    return url


def subscribe_url(env: dict[str, Any]) -> str | None:
    if env["Type"] != "SubscriptionConfirmation":
        return None
    return sns_url(_text(env, "SubscribeURL"), "SubscribeURL")


def algorithm(env: dict[str, Any]) -> hashes.HashAlgorithm:
    version = str(env.get("SignatureVersion"))
    if version == "1":
        return hashes.SHA1()
    if version == "2":
        return hashes.SHA256()
    raise WebhookRejected(f"unsupported SignatureVersion {version!r}")


def string_to_sign(env: dict[str, Any]) -> bytes:
    keys = NOTIFICATION if env["Type"] == "Notification" else CONFIRMATION
    return "".join(f"{k}\n{env[k]}\n" for k in keys if env.get(k) is not None).encode()


def check_signature(env: dict[str, Any], pem: bytes, now: datetime) -> None:
    key = _public_key(pem, now)
    try:
        signature = base64.b64decode(_text(env, "Signature"), validate=True)
        key.verify(signature, string_to_sign(env), padding.PKCS1v15(), algorithm(env))
    except (InvalidSignature, binascii.Error):
        raise WebhookRejected("the SNS signature does not match the message") from None


def _public_key(pem: bytes, now: datetime) -> rsa.RSAPublicKey:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise WebhookRejected("SigningCertURL did not serve a PEM certificate") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise WebhookRejected("the SNS signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRejected("the SNS signing certificate has no RSA key")
    return key


def _text(env: dict[str, Any], key: str) -> str:
    value = env.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookRejected(f"the SNS message has no {key}")
    return value
