"""ESP webhooks at the door: each provider's signature, replays, staleness, and bad input."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import esp_requests as esp
import httpx
import pytest
from esp_deliveries import DELIVERED
from harness import Stack, make_settings, running_stack
from sqlalchemy import func, select

from sequences.intake.esp import mailgun, postmark, resend, sendgrid, ses
from sequences.intake.esp.common import EspEvent
from sequences.kit.fetcher import FetchFailed, HttpFetcher
from sequences.mail.capture import CaptureServer
from sequences.store.tables import CONTACTS, EVENTS, SUPPRESSIONS

EMAIL = "ada@example.com"


@pytest.fixture
def certs() -> esp.CertificateServer:
    return esp.CertificateServer()


@pytest.fixture
async def stack(
    tmp_path: Path, capture: CaptureServer, redis_db: str, certs: esp.CertificateServer
) -> AsyncIterator[Stack]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    settings = make_settings(tmp_path, url, **esp.settings_overrides())
    async with running_stack(settings, redis_db, capture, worker=False) as running:
        running.deps.fetcher = certs
        yield running


async def post(stack: Stack, signed: esp.Signed, provider: str | None = None) -> httpx.Response:
    path = f"/v1/webhooks/{provider or signed.provider}"
    return await stack.client.post(path, content=signed.body, headers=signed.headers)


async def stored(stack: Stack) -> list[dict[str, Any]]:
    query = select(EVENTS, CONTACTS.c.email_key).join(CONTACTS).order_by(EVENTS.c.id)
    async with stack.deps.reader.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def written(stack: Stack) -> tuple[int, ...]:
    tables = [EVENTS, CONTACTS, SUPPRESSIONS]
    async with stack.deps.reader.connect() as conn:
        return tuple([await conn.scalar(select(func.count()).select_from(t)) or 0 for t in tables])


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


CASES = sorted(DELIVERED)


def _address(case: str) -> str:
    return f"{case}@example.com"


FOREIGN = {"accepted": 0, "duplicates": 0, "ignored": 0, "foreign": 1, "rejected": []}


async def test_each_provider_signature_is_accepted(stack: Stack) -> None:
    """Signed events about mail Dripline never sent: 2xx, counted as foreign, nothing written."""
    for case in CASES:
        response = await post(stack, DELIVERED[case](_address(case))())
        assert response.status_code == 200, (case, response.text)
        assert response.json() == FOREIGN, case
        again = await post(stack, DELIVERED[case](_address(case))())
        assert again.status_code == 200, (case, again.text)  # a retry is never refused
    assert await written(stack) == (0, 0, 0)


def _forged(case: str) -> esp.Signed:
    """A request whose body or credentials are not what the provider signed."""
    email = _address(case)
    if case == "mailgun":  # the signature covers timestamp + token: sign with another key
        return esp.mailgun(esp.mailgun_event("delivered", email), key="key-not-the-real-one")
    if case == "postmark":  # basic auth is all Postmark offers
        return esp.postmark(esp.postmark_record("Delivery", email), auth=("postmark-hook", "x"))
    return DELIVERED[case](email)().tampered()


async def test_forged_request_is_refused_and_writes_nothing(stack: Stack) -> None:
    for case in CASES:
        response = await post(stack, _forged(case))
        assert response.status_code == 401, (case, response.text)
        assert error(response)["code"] == "bad_signature", case
    assert await written(stack) == (0, 0, 0)


async def test_mailgun_token_is_good_for_one_request_and_subaccounts(stack: Stack) -> None:
    genuine = esp.mailgun(esp.mailgun_event("delivered", EMAIL))
    assert (await post(stack, genuine)).json() == FOREIGN
    # The same request again (a retry, a proxy repeating it): a duplicate, answered 2xx.
    again = await post(stack, genuine)
    assert again.status_code == 200, again.text
    assert again.json()["duplicates"] == 1 and again.json()["foreign"] == 0
    # Mailgun's signature does not cover event-data: the same token with another body is forged.
    forged = genuine.with_body(genuine.body.replace(b'"delivered"', b'"complained"'))
    response = await post(stack, forged)
    assert response.status_code == 401
    assert "already used" in error(response)["message"]
    subaccount = esp.mailgun(
        esp.mailgun_event("opened", EMAIL), key="key-of-a-subaccount", parent_key=esp.MAILGUN_KEY
    )
    assert (await post(stack, subaccount)).json() == FOREIGN
    assert await written(stack) == (0, 0, 0)


async def test_stale_timestamps_are_refused(stack: Stack) -> None:
    stale, hours_ago = time.time() - 600, datetime.now(UTC) - timedelta(hours=2)
    for signed in [
        esp.sendgrid([esp.sendgrid_event("delivered", EMAIL)], at=stale),
        esp.mailgun(esp.mailgun_event("delivered", EMAIL), at=stale),
        esp.resend("email.delivered", EMAIL, at=stale),
        esp.resend("email.delivered", EMAIL, at=time.time() + 600),
        esp.sns(esp.ses_record("Open", EMAIL), at=hours_ago),
    ]:
        response = await post(stack, signed)
        assert response.status_code == 401, (signed.provider, response.text)
        assert "timestamp" in error(response)["message"]
    assert await written(stack) == (0, 0, 0)
    # SNS retries resend the original Timestamp for up to 3,600 s: that is not a replay.
    late = esp.sns(esp.ses_record("Open", EMAIL), at=datetime.now(UTC) - timedelta(minutes=50))
    assert (await post(stack, late)).json() == FOREIGN


async def test_sns_certificate_only_from_sns_hosts(
    stack: Stack, certs: esp.CertificateServer
) -> None:
    for cert_url in [
        "https://sns.us-east-1.amazonaws.com.evil.test/SimpleNotificationService-1.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://evil.test/sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt",
    ]:
        certs.certificates[cert_url] = esp.sns_identity()[1]  # even the right key is not trusted
        response = await post(stack, esp.sns(esp.ses_record("Open", EMAIL), cert_url=cert_url))
        assert response.status_code == 401, (cert_url, response.text)
    assert certs.fetched == []
    assert await written(stack) == (0, 0, 0)


async def test_sns_topic_must_be_allowed(stack: Stack, certs: esp.CertificateServer) -> None:
    other = "arn:aws:sns:us-east-1:999999999999:someone-else"
    for kind in ("Notification", "SubscriptionConfirmation"):
        response = await post(stack, esp.sns(esp.ses_record("Open", EMAIL), kind=kind, topic=other))
        assert response.status_code == 403, response.text
        assert error(response)["code"] == "topic_not_allowed"
    assert certs.confirmed == [] and await written(stack) == (0, 0, 0)


async def test_sns_subscription_is_confirmed(stack: Stack, certs: esp.CertificateServer) -> None:
    handshake = esp.sns("You have chosen to subscribe...", kind="SubscriptionConfirmation")
    response = await post(stack, handshake)
    assert response.status_code == 200, response.text
    assert response.json() == {**FOREIGN, "foreign": 0}
    assert len(certs.confirmed) == 1
    assert certs.confirmed[0].startswith("https://sns.us-east-1.amazonaws.com/?Action=Confirm")
    elsewhere = esp.sns(
        "You have chosen to subscribe...",
        kind="SubscriptionConfirmation",
        subscribe_url="https://attacker.test/?Action=ConfirmSubscription",
    )
    assert (await post(stack, elsewhere)).status_code == 401
    assert len(certs.confirmed) == 1


async def test_sns_subject_is_part_of_the_signature(stack: Stack) -> None:
    signed = esp.sns(esp.ses_record("Open", EMAIL), subject="Amazon SES Email Event", version="1")
    assert (await post(stack, signed)).status_code == 200
    renamed = signed.with_body(signed.body.replace(b"SES Email Event", b"SES Email Evenz"))
    assert (await post(stack, renamed)).status_code == 401


async def test_unknown_provider(stack: Stack) -> None:
    response = await post(stack, DELIVERED["sendgrid"](EMAIL)(), provider="sparkpost")
    assert response.status_code == 404
    assert error(response)["code"] == "unknown_provider"
    assert "sendgrid" in error(response)["message"]


async def test_unconfigured_provider_refuses_everything(
    tmp_path: Path, capture: CaptureServer, redis_db: str
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'bare.sqlite'}")
    async with running_stack(settings, redis_db, capture, worker=False) as bare:
        for case in ("sendgrid", "mailgun", "ses-v2", "postmark", "resend"):
            response = await post(bare, DELIVERED[case](EMAIL)())
            assert response.status_code == 503, response.text
            assert error(response)["message"].endswith("is not configured")
        assert await written(bare) == (0, 0, 0)


def bad_payloads() -> list[tuple[Any, int, str, str]]:
    """Signed when the test runs: a list signed at import would be stale in a long session.

    A body that is not the provider's format at all is refused (Mailgun: 406, its "do not
    retry"); an item that cannot be mapped is rejected alone and the request answered 2xx.
    """
    no_recipient = esp.without(esp.mailgun_event("opened", EMAIL), "recipient")
    no_email = esp.without(esp.postmark_record("Bounce", EMAIL), "Email")
    return [
        (esp.sendgrid_raw(b'[{"event": "delivered",'), 400, "body", "invalid JSON at character"),
        (esp.sendgrid_raw(b'{"event": "delivered"}'), 422, "body", "JSON array"),
        (esp.sendgrid_raw(b'[{"event": "open", "sg_event_id": "x"}]'), 200, "0.email", "string"),
        (esp.mailgun(no_recipient), 406, "event-data.recipient", "expected a string"),
        (esp.mailgun({"event": "opened"}), 406, "event-data.id", "expected a string"),
        (esp.sns("not json"), 200, "Message", "not a JSON SES record"),
        (esp.postmark({"Recipient": EMAIL}), 200, "RecordType", "expected a string"),
        (esp.postmark(no_email), 200, "Email", "expected a string"),
        (esp.svix(b'{"type": "email.bounced", "data": {}}'), 200, "data.to", "address"),
        (esp.svix(b"[]"), 422, "body", "expected an object"),
    ]


async def test_bad_payload_names_the_field(stack: Stack) -> None:
    for signed, status, path, words in bad_payloads():
        response = await post(stack, signed)
        assert response.status_code == status, (path, response.text)
        found = response.json()["rejected"] if status == 200 else error(response)["details"]
        assert found[0]["path"] == path, response.text
        assert words in found[0]["message"], response.text
    assert await written(stack) == (0, 0, 0)
    metrics = (await stack.client.get("/metrics", headers=stack.auth())).text
    assert 'dripline_webhook_rejected_total{field="email",provider="sendgrid"} 1.0' in metrics
    assert 'dripline_webhook_items_total{outcome="rejected",provider="mailgun"} 2.0' in metrics
    assert 'dripline_webhook_rejected_total{field="data.to",provider="resend"} 1.0' in metrics


def _mailgun_form() -> esp.Signed:
    """Mailgun's legacy form-encoded webhooks: not the JSON we subscribe to; 406, no retries."""
    return esp.Signed("mailgun", b"event=delivered&recipient=ada%40example.com", {})


async def test_mailgun_body_that_is_not_json_is_not_retried(stack: Stack) -> None:
    response = await post(stack, _mailgun_form())
    assert response.status_code == 406, response.text
    assert error(response)["details"][0]["path"] == "body"


async def test_missing_signature_headers(stack: Stack) -> None:
    signed = DELIVERED["sendgrid"](EMAIL)()
    del signed.headers["X-Twilio-Email-Event-Webhook-Signature"]
    response = await post(stack, signed)
    assert response.status_code == 401
    assert error(response)["message"] == ("missing header X-Twilio-Email-Event-Webhook-Signature")
    unsigned = esp.Signed("postmark", esp.postmark(esp.postmark_record("Delivery", EMAIL)).body)
    assert (await post(stack, unsigned)).status_code == 401
    assert await written(stack) == (0, 0, 0)


async def test_one_bad_item_does_not_fail_the_batch(stack: Stack) -> None:
    good = esp.sendgrid_event("delivered", EMAIL)
    bad = esp.without(esp.sendgrid_event("open", "bo@example.com"), "sg_event_id")
    response = await post(stack, esp.sendgrid([good, bad, "not an event"]))
    assert response.status_code == 200, response.text
    assert response.json()["foreign"] == 1  # the good one: about mail we never sent
    assert [r["path"] for r in response.json()["rejected"]] == ["1.sg_event_id", "2"]


async def test_sns_setup_messages_are_acknowledged(stack: Stack) -> None:
    """SES's own note that a topic is subscribed to an identity's notifications: 2xx, ignored."""
    note = {
        "notificationType": "AmazonSnsSubscriptionSucceeded",
        "message": "You have successfully subscribed your Amazon SNS topic "
        f"'{esp.TOPIC}' to receive 'Bounce' notifications from Amazon SES for identity "
        "'acme.test'.",
    }
    response = await post(stack, esp.sns(note, subject="Amazon SES Bounce Notification"))
    assert response.status_code == 200, response.text
    assert response.json() == {**FOREIGN, "foreign": 0, "ignored": 1}


async def test_webhooks_take_bodies_larger_than_the_api_limit(stack: Stack) -> None:
    """A Postmark bounce can carry the whole message (Content); the API's 1 MB limit would make
    Postmark give up on it, so the address would never be suppressed."""
    content = "Received: by mx.example.com\r\n" + "x" * 1_500_000
    bounce = esp.postmark_record("Bounce", EMAIL, Type="HardBounce", Content=content)
    response = await post(stack, esp.postmark(bounce))
    assert response.status_code == 200, response.text
    assert response.json() == FOREIGN
    elsewhere = await stack.client.post(
        "/v1/events", content=b"[" + b" " * 1_500_000 + b"]", headers=stack.auth()
    )
    assert elsewhere.status_code == 413


async def test_http_fetcher_caches_certificates_and_reports_failures() -> None:
    requests: list[str] = []

    def aws(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        if request.url.path.endswith(".pem"):
            return httpx.Response(200, content=esp.sns_identity()[1])
        return httpx.Response(404)

    fetcher = HttpFetcher(httpx.AsyncClient(transport=httpx.MockTransport(aws)))
    try:
        assert await fetcher.certificate(esp.CERT_URL) == esp.sns_identity()[1]
        assert await fetcher.certificate(esp.CERT_URL) == esp.sns_identity()[1]
        with pytest.raises(FetchFailed) as failed:
            await fetcher.confirm("https://sns.us-east-1.amazonaws.com/?Action=Gone")
    finally:
        await fetcher.aclose()
    assert requests == [esp.CERT_URL, "https://sns.us-east-1.amazonaws.com/?Action=Gone"]
    assert failed.value.status == 503  # SNS delivers again later


README = Path(__file__).resolve().parents[1] / "README.md"
TABLES = {"SendGrid": sendgrid, "Mailgun": mailgun, "Amazon SES": ses, "Postmark": postmark}
TABLES["Resend"] = resend


def readme_tables() -> dict[str, dict[str, str | None]]:
    """Each ``#### Provider`` table under README's "ESP webhooks": event -> ours (None: ignored)."""
    section = README.read_text().split("### ESP webhooks", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, dict[str, str | None]] = {}
    for block in section.split("\n#### ")[1:]:
        name, _, body = block.partition("\n")
        rows = [line.split("|")[1:3] for line in body.splitlines() if line.startswith("| `")]
        tables[name.strip()] = {
            event.strip().strip("`"): None if ours.strip() == "ignored" else ours.strip().strip("`")
            for event, ours in rows
        }
    return tables


def test_readme_tables_are_the_code() -> None:
    tables = readme_tables()
    assert sorted(tables) == sorted(TABLES)
    for name, module in TABLES.items():
        assert tables[name] == module.EVENTS, name


async def test_webhook_body_limit_is_its_own(
    tmp_path: Path, capture: CaptureServer, redis_db: str
) -> None:
    overrides = {**esp.settings_overrides(), "DRIPLINE_WEBHOOK_MAX_BODY_BYTES": 2_000_000}
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'small.sqlite'}", **overrides
    )
    async with running_stack(settings, redis_db, capture, worker=False) as small:
        content = "x" * 2_100_000
        bounce = esp.postmark_record("Bounce", EMAIL, Type="HardBounce", Content=content)
        response = await post(small, esp.postmark(bounce))
        assert response.status_code == 413, response.text
        assert "2000000 bytes" in error(response)["message"]


def _row(items: list[Any]) -> str | None:
    """What one parsed event became, written as in the tables."""
    [event] = items
    assert isinstance(event, EspEvent), event
    bounce = event.properties.get("bounce_type")
    return f"{event.type}:{bounce}" if bounce else event.type


def test_the_tables_decide_what_events_become() -> None:
    """The parsers map through the same tables: a row changed in the code changes behaviour."""

    def sendgrid_row(kind: str, **fields: Any) -> str | None:
        body = json.dumps([esp.sendgrid_event(kind, EMAIL, **fields)]).encode()
        return _row(sendgrid.parse(body, {}))

    def postmark_row(kind: str) -> str | None:
        body = json.dumps(esp.postmark_record("Bounce", EMAIL, Type=kind)).encode()
        return _row(postmark.parse(body, {}))

    def mailgun_row(severity: str, reason: str) -> str | None:
        data = esp.mailgun_event("failed", EMAIL, severity=severity, reason=reason)
        return _row(mailgun.parse(json.dumps({"event-data": data}).encode(), {}))

    assert sendgrid_row("bounce", type="blocked") == sendgrid.EVENTS["bounce/blocked"]
    assert sendgrid_row("dropped", reason="Invalid") == sendgrid.EVENTS["dropped/Invalid"]
    assert sendgrid_row("dropped", reason="Spam Content") == sendgrid.EVENTS["dropped"]
    assert sendgrid_row("processed") == sendgrid.EVENTS["processed"]
    for kind in ("DMARCPolicy", "SpamNotification", "ManuallyDeactivated", "AutoResponder"):
        assert postmark_row(kind) == postmark.EVENTS.get(f"Bounce/{kind}"), kind
    assert mailgun_row("temporary", "generic") == mailgun.EVENTS["failed/temporary"]
    key = "failed/permanent/suppress-unsubscribe"
    assert mailgun_row("permanent", "suppress-unsubscribe") == mailgun.EVENTS[key]
