"""DKIM signing (RFC 6376): rsa-sha256, relaxed/relaxed.

Signing is implemented here rather than through dkimpy because dkimpy's RSA is pure Python
(~6 ms per message); OpenSSL through ``cryptography`` signs in 0.3-0.7 ms, depending on the
machine, and releases the GIL while it does (so a batch is signed in a thread: sign_all).
dkimpy stays the independent verifier in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "OVERSIGNED_HEADERS",
    "SIGNED_HEADERS",
    "DkimSigner",
    "Unsigned",
    "dns_txt_record",
    "generate_private_key_pem",
    "sign_all",
]

# Both List-Unsubscribe headers must be signed: Gmail/Yahoo ignore one-click unsubscribe
# otherwise (dkimpy's default list leaves out List-Unsubscribe-Post).
SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
# Oversigned (RFC 6376 8.15): named in h= once more than they occur, so an instance added
# later, such as a second Subject: prepended above the signed one, breaks the signature.
OVERSIGNED_HEADERS: frozenset[str] = frozenset(
    {
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)

_CRLF = b"\r\n"
_WSP_RUN = re.compile(rb"[\t ]+")
# Only runs that canonicalisation changes: matching every single space costs ~3x more.
_WSP_TO_COLLAPSE = re.compile(rb"\t[\t ]*| [\t ]+")
_LINE_BREAK = re.compile(rb"\r?\n")
_DNS_NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_TXT_CHUNK = 255
_B_FOLD = 70
_MIN_KEY_BITS = 1024


def generate_private_key_pem() -> bytes:
    """A new RSA-2048 key as unencrypted PKCS#8 PEM (what DKIM_PRIVATE_KEY points to)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def check_names(domain: str, selector: str) -> None:
    """Both go verbatim into headers and DNS names; a ";" or space would corrupt them."""
    for label, value in (("domain", domain), ("selector", selector)):
        if not _DNS_NAME_RE.match(value):
            raise ValueError(f"invalid DKIM {label}: {value!r} (letters, digits, '-', '_', '.')")


def dns_txt_record(private_key_pem: bytes, selector: str, domain: str) -> str:
    """The zone-file line publishing the public half of ``private_key_pem``."""
    check_names(domain, selector)
    public_der = (
        _load_rsa_key(private_key_pem)
        .public_key()
        .public_bytes(
            encoding=serialization.Encoding.DER,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    value = f"v=DKIM1; k=rsa; p={base64.b64encode(public_der).decode('ascii')}"
    # A single TXT character-string holds at most 255 octets; resolvers concatenate them.
    chunks = [value[i : i + _TXT_CHUNK] for i in range(0, len(value), _TXT_CHUNK)]
    quoted = " ".join(f'"{chunk}"' for chunk in chunks)
    return f"{selector}._domainkey.{domain.rstrip('.')}. IN TXT {quoted}"


class DkimSigner:
    """Signs messages for one domain/selector; the key is parsed once, here."""

    def __init__(
        self,
        private_key_pem: bytes,
        domain: str,
        selector: str,
        headers: Sequence[str] = SIGNED_HEADERS,
        oversigned: frozenset[str] = OVERSIGNED_HEADERS,
    ) -> None:
        self._key = _load_rsa_key(private_key_pem)
        check_names(domain, selector)
        self._domain = domain
        self._selector = selector
        self._headers = tuple(h.lower() for h in headers)
        self._oversigned = frozenset(h.lower() for h in oversigned)
        if "from" not in self._headers:
            raise ValueError("DKIM requires the From header to be signed")

    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """``message`` with a ``DKIM-Signature:`` header prepended."""
        return self.prepare(message, timestamp=timestamp).sign()

    def prepare(self, message: bytes, *, timestamp: int | None = None) -> Unsigned:
        """Everything but the RSA signature: canonicalised, hashed, the header written up to
        ``b=``. The signature is left to :meth:`Unsigned.sign` (or :func:`sign_all`), so a
        batch can be signed in a thread: OpenSSL's RSA releases the GIL, and the signatures
        were a third of a send's CPU on the event loop."""
        message = _normalise_line_endings(message)
        fields, body = _split_message(message)
        body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())
        signed = _select_headers(fields, self._headers)
        # An h= name with no instance left hashes as nothing (RFC 6376 5.4.2), so the extra
        # names change no hash today and fail any header added tomorrow.
        extra = [h.encode("ascii") for h in dict.fromkeys(self._headers) if h in self._oversigned]
        names = b":".join([name for name, _ in signed] + extra)
        stamp = int(time.time()) if timestamp is None else timestamp
        # Folded exactly as emitted: relaxed canonicalisation collapses each fold to one space,
        # so the verifier hashes the same bytes as long as only the b= value is appended later.
        unsigned_value = b"".join(
            (
                b" v=1; a=rsa-sha256; c=relaxed/relaxed;",
                b" d=" + self._domain.encode("ascii") + b";",
                b" s=" + self._selector.encode("ascii") + b";",
                b" t=" + str(stamp).encode("ascii") + b";",
                _CRLF + b"\th=" + names + b";",
                _CRLF + b"\tbh=" + body_hash + b";",
                _CRLF + b"\tb=",
            )
        )
        to_sign = b"".join(_relaxed_header(name, value) for name, value in signed)
        # The signature header itself is hashed last, with an empty b= and no trailing CRLF.
        to_sign += _relaxed_header(b"dkim-signature", unsigned_value).removesuffix(_CRLF)
        return Unsigned(self._key, to_sign, b"DKIM-Signature:" + unsigned_value, message)


@dataclass(frozen=True, slots=True)
class Unsigned:
    """A message ready for its signature: what the key signs and the header that carries it."""

    key: rsa.RSAPrivateKey
    to_sign: bytes
    header: bytes  # "DKIM-Signature: v=1; ... b=" (the value to append)
    message: bytes

    def sign(self) -> bytes:
        """The message with its ``DKIM-Signature:`` header prepended."""
        signature = self.key.sign(self.to_sign, padding.PKCS1v15(), hashes.SHA256())
        return self.header + _fold_b(base64.b64encode(signature)) + _CRLF + self.message


def sign_all(unsigned: Sequence[Unsigned]) -> list[bytes | Exception]:
    """The signed messages, in order; a message whose signing failed gets its exception (for
    a thread: one hand-off for a whole batch, not one per message)."""
    out: list[bytes | Exception] = []
    for item in unsigned:
        try:
            out.append(item.sign())
        except Exception as error:  # one message's failure must not lose the others
            out.append(error)
    return out


def _load_rsa_key(private_key_pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        # Gmail, Yahoo and Microsoft verify RSA only.
        raise ValueError("DKIM key must be an RSA private key")
    if key.key_size < _MIN_KEY_BITS:
        raise ValueError(f"DKIM key must be at least {_MIN_KEY_BITS} bits")
    return key


def _normalise_line_endings(message: bytes) -> bytes:
    # SMTP transmits CRLF; hashing anything else would not match what the receiver sees.
    if message.count(b"\n") == message.count(_CRLF):
        return message
    return _LINE_BREAK.sub(_CRLF, message)


def _split_message(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header fields as (name, raw value incl. folds) in order, and the body."""
    end = message.find(_CRLF + _CRLF)
    head, body = (message, b"") if end < 0 else (message[: end + 2], message[end + 4 :])
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(_CRLF):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + _CRLF + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise ValueError(f"malformed header line: {line[:80]!r}")
        fields.append((name, value))
    return fields, body


def _select_headers(
    fields: list[tuple[bytes, bytes]], wanted: Sequence[str]
) -> list[tuple[bytes, bytes]]:
    """Each present instance of each wanted header, bottom-up as RFC 6376 5.4.2 orders them."""
    by_name: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for name, value in fields:
        by_name.setdefault(name.strip().lower(), []).append((name, value))
    selected: list[tuple[bytes, bytes]] = []
    for want in dict.fromkeys(wanted):
        instances = by_name.get(want.encode("ascii"), [])
        selected.extend((want.encode("ascii"), value) for _, value in reversed(instances))
    return selected


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    unfolded = _LINE_BREAK.sub(b"", value)
    return name.strip().lower() + b":" + _WSP_RUN.sub(b" ", unfolded).strip(b" \t") + _CRLF


def _relaxed_body(body: bytes) -> bytes:
    # RFC 6376 3.4.4 strips trailing WSP, then collapses runs; collapsing first leaves at most
    # one trailing space per line, which a plain replace removes at C speed. Same result.
    # Two substring tests at C speed skip the regex scan for a body that has nothing to
    # collapse: ours, encoded 7bit or quoted-printable, never does.
    if b"\t" in body or b"  " in body:
        body = _WSP_TO_COLLAPSE.sub(b" ", body)
    body = body.replace(b" \r\n", _CRLF)
    end = len(body)
    while body.endswith(_CRLF, 0, end):
        end -= 2
    content = body[:end]
    # An empty body canonicalises to nothing; any other body ends in exactly one CRLF.
    return content + _CRLF if content else b""


def _fold_b(signature: bytes) -> bytes:
    chunks = [signature[i : i + _B_FOLD] for i in range(0, len(signature), _B_FOLD)]
    return (_CRLF + b"\t ").join(chunks)
