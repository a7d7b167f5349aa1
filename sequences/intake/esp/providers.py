"""The ESPs we take webhooks from, each behind the one interface the route uses."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from sequences.errors import NotFound
from sequences.intake.esp import mailgun, postmark, resend, sendgrid, ses, sns
from sequences.intake.esp.common import Headers, Item, NotConfigured
from sequences.kit.fetcher import Fetcher
from sequences.settings import Settings

log = logging.getLogger(__name__)
C = TypeVar("C")


class Provider(Protocol):
    @property
    def name(self) -> str: ...

    async def authenticate(
        self, headers: Headers, body: bytes, settings: Settings, now: datetime, fetcher: Fetcher
    ) -> None:
        """Raise WebhookRejected unless the request provably comes from this ESP."""
        ...

    def parse(self, body: bytes, headers: Headers) -> list[Item]: ...

    def replay_key(self, body: bytes) -> str | None:
        """A value to accept once, when the signature does not cover the whole body."""
        ...


def _never(body: bytes) -> None:
    return None  # the signature covers the body: a replay is a duplicate event id


@dataclass(frozen=True)
class Signed(Generic[C]):
    """A provider whose check needs only its settings and the request itself."""

    name: str
    configure: Callable[[Settings], C | None]
    check: Callable[[Headers, bytes, C, datetime], None]
    parse: Callable[[bytes, Headers], list[Item]]
    replay_key: Callable[[bytes], str | None] = _never

    async def authenticate(
        self, headers: Headers, body: bytes, settings: Settings, now: datetime, fetcher: Fetcher
    ) -> None:
        config = self.configure(settings)
        if config is None:
            raise NotConfigured(self.name)
        self.check(headers, body, config, now)


@dataclass(frozen=True)
class AmazonSes:
    """SES via SNS: the key is fetched from AWS, and a subscription is confirmed once signed."""

    name: str = "ses"

    async def authenticate(
        self, headers: Headers, body: bytes, settings: Settings, now: datetime, fetcher: Fetcher
    ) -> None:
        config = ses.configure(settings)
        if config is None:
            raise NotConfigured(self.name)
        await ses.verify(headers, body, config, now, fetcher)
        env = sns.envelope(body)
        url = sns.subscribe_url(env)
        if url is not None:
            await fetcher.confirm(url)
            log.info("confirmed SNS subscription", extra={"topic": env["TopicArn"]})

    def parse(self, body: bytes, headers: Headers) -> list[Item]:
        return ses.parse(body, headers)

    def replay_key(self, body: bytes) -> str | None:
        return None


PROVIDERS: dict[str, Provider] = {
    "sendgrid": Signed("sendgrid", sendgrid.configure, sendgrid.verify, sendgrid.parse),
    "mailgun": Signed(
        "mailgun", mailgun.configure, mailgun.verify, mailgun.parse, mailgun.replay_key
    ),
    "ses": AmazonSes(),
    "postmark": Signed("postmark", postmark.configure, postmark.verify, postmark.parse),
    "resend": Signed("resend", resend.configure, resend.verify, resend.parse),
}


def lookup(name: str) -> Provider:
    provider = PROVIDERS.get(name)
    if provider is None:
        known = ", ".join(sorted(PROVIDERS))
        raise NotFound("unknown_provider", f"no webhook for '{name}'; known: {known}")
    return provider
