"""HTTPS GETs the SNS handshake needs: signing certificates (cached) and subscription URLs."""

from __future__ import annotations

from typing import Protocol

import httpx

from sequences.errors import DriplineError

MAX_CERTIFICATES = 32  # SNS signs with a handful per region; the bound is against surprises


class FetchFailed(DriplineError):
    """Raise when AWS cannot be reached: 503, so SNS delivers the message again later."""

    status = 503


class Fetcher(Protocol):
    async def certificate(self, url: str) -> bytes:
        """The PEM certificate at ``url`` (already checked to be an SNS host)."""
        ...

    async def confirm(self, url: str) -> None:
        """Visit a SubscribeURL; raise FetchFailed unless it answers 2xx."""
        ...


class HttpFetcher:
    """The real fetcher: one pooled client, certificates kept in memory by URL."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self._certificates: dict[str, bytes] = {}

    async def certificate(self, url: str) -> bytes:
        cached = self._certificates.get(url)
        if cached is None:
            cached = await self._get(url)
            if len(self._certificates) >= MAX_CERTIFICATES:
                self._certificates.clear()
            self._certificates[url] = cached
        return cached

    async def confirm(self, url: str) -> None:
        await self._get(url)

    async def _get(self, url: str) -> bytes:
        try:
            response = await self._client.get(url)
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise FetchFailed("aws_unreachable", f"GET {url} failed: {error}") from None
        return response.content

    async def aclose(self) -> None:
        await self._client.aclose()
