"""DKIM signers per sending domain, all from one private key loaded once."""

from __future__ import annotations

from pathlib import Path

from sequences.mail.dkim import DkimSigner, generate_private_key_pem
from sequences.mail.mime import split_address


class Signers:
    def __init__(self, private_key_pem: bytes, selector: str, domain: str | None = None) -> None:
        self.private_key_pem = private_key_pem
        self.selector = selector
        self.domain = domain  # a fixed d= domain; None signs as each sender's own domain
        self._by_domain: dict[str, DkimSigner] = {}

    def for_address(self, address: str) -> DkimSigner:
        domain = self.domain or split_address(address)[1].rpartition("@")[2].lower()
        signer = self._by_domain.get(domain)
        if signer is None:
            signer = DkimSigner(self.private_key_pem, domain, self.selector)
            self._by_domain[domain] = signer
        return signer


def load_or_create_key(path: Path) -> bytes:
    """The embedded default: a key made on first run and kept in the data directory."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = generate_private_key_pem()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    tmp.chmod(0o600)
    tmp.replace(path)
    return pem
