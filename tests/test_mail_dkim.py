from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed

from sequences.mail.dkim import (
    OVERSIGNED_HEADERS,
    DkimSigner,
    Unsigned,
    _relaxed_body,
    dns_txt_record,
    generate_private_key_pem,
    sign_all,
)
from sequences.mail.mime import OutgoingEmail, build_message

SELECTOR = "dripline"
DOMAIN = "acme.test"

DnsFunc = Callable[..., bytes]


@pytest.fixture(scope="module")
def private_key_pem() -> bytes:
    return generate_private_key_pem()


@pytest.fixture(scope="module")
def dnsfunc(private_key_pem: bytes) -> DnsFunc:
    record = dns_txt_record(private_key_pem, SELECTOR, DOMAIN)
    value = "".join(re.findall(r'"([^"]*)"', record)).encode("ascii")

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return value

    return lookup


@pytest.fixture(scope="module")
def signer(private_key_pem: bytes) -> DkimSigner:
    return DkimSigner(private_key_pem, DOMAIN, SELECTOR)


def message(subject: str = "Zoë, your trial ends Friday", html: str | None = None) -> bytes:
    return build_message(
        OutgoingEmail(
            from_addr="Acme Team <team@acme.test>",
            to_addr="Zoë <zoe@example.test>",
            subject=subject,
            text="Hi Zoë,\n\nYour trial ends Friday.  \n\n\n",
            html=html or "<p>Hi Zoë,</p>\n<p>Your trial ends Friday.</p>",
            message_id="<m1@acme.test>",
            unsubscribe_url="https://acme.test/u/tok",
            reply_to="sam@acme.test",
            date=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
        )
    )


def signature_tags(signed: bytes) -> dict[str, str]:
    header = re.match(rb"DKIM-Signature:(.*?)\r\n(?=\S)", signed, re.DOTALL)
    assert header is not None
    unfolded = re.sub(r"\s+", "", header.group(1).decode("ascii"))
    return dict(tag.split("=", 1) for tag in unfolded.split(";") if tag)


def test_signature_verifies_with_dkimpy(signer: DkimSigner, dnsfunc: DnsFunc) -> None:
    signed = signer.sign(message())
    assert signed.startswith(b"DKIM-Signature: ")
    assert dkim.verify(signed, dnsfunc=dnsfunc)


def test_batch_signed_in_a_thread_verifies_and_keeps_order(
    signer: DkimSigner, dnsfunc: DnsFunc
) -> None:
    """The send path prepares messages on the event loop and signs the batch in one thread
    hand-off (sign_all): each result is the message it was given, signed exactly as sign()
    signs it; a message whose signature fails is returned as its error, the others signed."""
    subjects = [f"Message {i}" for i in range(3)]
    built = [message(subject=s) for s in subjects]
    prepared = [signer.prepare(m, timestamp=1_790_000_000) for m in built]
    broken = Unsigned(
        ed25519.Ed25519PrivateKey.generate(),  # type: ignore[arg-type]  # no RSA sign(): fails
        b"x",
        b"DKIM-Signature: b=",
        b"",
    )
    results = sign_all([prepared[0], broken, prepared[1], prepared[2]])
    assert isinstance(results[1], Exception)
    signed = [results[0], results[2], results[3]]
    for subject, unsigned, data in zip(subjects, built, signed, strict=True):
        assert isinstance(data, bytes)
        assert dkim.verify(data, dnsfunc=dnsfunc)
        assert f"Subject: {subject}".encode() in data
        assert data == signer.sign(unsigned, timestamp=1_790_000_000)


def test_signed_header_list(signer: DkimSigner) -> None:
    tags = signature_tags(signer.sign(message(), timestamp=1_800_000_000))
    signed_headers = tags["h"].split(":")
    assert "list-unsubscribe" in signed_headers
    assert "list-unsubscribe-post" in signed_headers
    assert signed_headers[0] == "from"
    assert "reply-to" in signed_headers
    assert (tags["a"], tags["c"], tags["d"], tags["s"]) == (
        "rsa-sha256",
        "relaxed/relaxed",
        DOMAIN,
        SELECTOR,
    )
    assert tags["t"] == "1800000000"


def test_oversigned_headers_are_named_once_more_than_present(signer: DkimSigner) -> None:
    unsigned = message()
    head = unsigned.split(b"\r\n\r\n", 1)[0].decode()
    present = [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line[:1].strip()]
    names = signature_tags(signer.sign(unsigned))["h"].split(":")
    assert "cc" not in present and names.count("cc") == 1
    for name in OVERSIGNED_HEADERS:
        assert names.count(name) == present.count(name) + 1, name
    assert names.count("mime-version") == present.count("mime-version") == 1


@pytest.mark.parametrize(
    "added",
    [
        b"Subject: Your account is suspended",
        b"From: Bank <security@bank.test>",
        b"Cc: someone@else.test",
        b"List-Unsubscribe: <https://evil.test/u>",
    ],
)
def test_a_header_added_above_the_signed_ones_fails(
    signer: DkimSigner, dnsfunc: DnsFunc, added: bytes
) -> None:
    signed = signer.sign(message())
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    # Mail clients show the topmost Subject or From; without oversigning this still verified.
    assert not dkim.verify(added + b"\r\n" + signed, dnsfunc=dnsfunc)


def test_emitted_header_lines_are_short(signer: DkimSigner) -> None:
    signed = signer.sign(message())
    head = signed.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) < 998


@pytest.mark.parametrize(
    ("original", "tampered"),
    [
        (b"Your trial ends Friday.", b"Your trial ends Monday."),
        (b"Subject: =?utf-8?b?", b"Subject: Free money =?utf-8?b?"),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"),
    ],
)
def test_tampering_breaks_the_signature(
    signer: DkimSigner, dnsfunc: DnsFunc, original: bytes, tampered: bytes
) -> None:
    signed = signer.sign(message())
    assert original in signed
    assert not dkim.verify(signed.replace(original, tampered, 1), dnsfunc=dnsfunc)


def test_relaxed_canonicalisation_tolerates_whitespace_changes(
    signer: DkimSigner, dnsfunc: DnsFunc
) -> None:
    signed = signer.sign(message(subject="Plain ascii subject"))
    # What relaying MTAs do: re-fold headers, pad whitespace, add trailing blank lines.
    mangled = signed.replace(b"Subject: Plain ascii", b"Subject:   Plain \r\n\t ascii", 1)
    mangled = mangled.replace(b"MIME-Version: 1.0", b"mime-version:1.0  ", 1) + b"\r\n\r\n"
    assert dkim.verify(mangled, dnsfunc=dnsfunc)


def test_long_html_and_lf_input_verify(signer: DkimSigner, dnsfunc: DnsFunc) -> None:
    signed = signer.sign(message(html="<p>" + "Zoë " * 3000 + "</p>").replace(b"\r\n", b"\n"))
    assert b"\n" not in signed.replace(b"\r\n", b"")
    assert dkim.verify(signed, dnsfunc=dnsfunc)


@pytest.mark.parametrize(
    "body",
    [b"", b"\r\n", b"abc", b"abc \r\n\r\n", b" a  \t b \r\n\r\n\r\n", b"x\r\n \r\n\t\r\n"],
)
def test_relaxed_body_matches_dkimpy(body: bytes) -> None:
    assert _relaxed_body(body) == Relaxed.canonicalize_body(body)


def test_relaxed_body_matches_dkimpy_on_random_bodies() -> None:
    pieces = [b" ", b"  ", b"\t", b"\r\n", b"\r\n\r\n", b"a", b"bc", b"\r", b"=20"]
    rng = random.Random(6376)
    for _ in range(500):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert _relaxed_body(body) == Relaxed.canonicalize_body(body), body


def test_dns_record_parses(private_key_pem: bytes) -> None:
    record = dns_txt_record(private_key_pem, SELECTOR, DOMAIN)
    match = re.fullmatch(r"(\S+) IN TXT ((?:\"[^\"]*\" ?)+)", record)
    assert match is not None
    assert match.group(1) == "dripline._domainkey.acme.test."
    strings = re.findall(r'"([^"]*)"', match.group(2))
    assert all(len(s) <= 255 for s in strings)
    tags = dict(t.strip().split("=", 1) for t in "".join(strings).split(";"))
    assert (tags["v"], tags["k"]) == ("DKIM1", "rsa")
    public_key = serialization.load_der_public_key(base64.b64decode(tags["p"]))
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048


def test_rejects_non_rsa_key() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="RSA"):
        DkimSigner(pem, DOMAIN, SELECTOR)


@pytest.mark.parametrize(("domain", "selector"), [("acme.test; x=y", "s"), ("acme.test", "a b")])
def test_rejects_bad_domain_or_selector(private_key_pem: bytes, domain: str, selector: str) -> None:
    with pytest.raises(ValueError, match="invalid DKIM"):
        DkimSigner(private_key_pem, domain, selector)
