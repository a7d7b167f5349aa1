from __future__ import annotations

import email
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

from sequences.mail.mime import OutgoingEmail, build_message, envelope_address, make_message_id

WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def sample(**overrides: object) -> OutgoingEmail:
    base = OutgoingEmail(
        from_addr="Acme Team <team@acme.test>",
        to_addr="Zoë Müller <zoe@example.test>",
        subject="Your trial ends Friday",
        text="Hi Zoë,\n\nYour trial ends Friday.\n",
        html="<p>Hi Zoë,</p><p>Your trial ends Friday.</p>",
        message_id="<abc123@acme.test>",
        unsubscribe_url="https://acme.test/u/tok123",
        date=WHEN,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> list[EmailMessage]:
    found = list(message.iter_parts())
    assert all(isinstance(part, EmailMessage) for part in found)
    return found  # type: ignore[return-value]


def test_structure_and_headers() -> None:
    data = build_message(sample(reply_to="Sam <sam@acme.test>", headers={"X-Dripline": "m1"}))
    message = parse(data)

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parts(message)] == ["text/plain", "text/html"]
    assert message["Message-ID"] == "<abc123@acme.test>"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == "<https://acme.test/u/tok123>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Reply-To"].addresses[0].addr_spec == "sam@acme.test"
    assert message["X-Dripline"] == "m1"
    assert parsedate_to_datetime(message["Date"]) == WHEN


def test_crlf_ascii_and_line_limits() -> None:
    data = build_message(sample(html="<p>" + "é" * 3000 + "x" * 3000 + "</p>"))
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


def test_non_ascii_subject_and_name_round_trip() -> None:
    subject = "Zoë, your trial ends — 3 days left ✨"
    message = parse(build_message(sample(subject=subject)))
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == "Zoë Müller"
    assert message["To"].addresses[0].addr_spec == "zoe@example.test"
    assert message["From"].addresses[0].display_name == "Acme Team"


def test_long_non_ascii_subject_is_split_into_encoded_words() -> None:
    subject = "Grüße aus München — " * 8
    data = build_message(sample(subject=subject))
    assert parse(data)["Subject"] == subject.strip()
    subject_lines = re.search(rb"Subject: .*?\r\n(?=[^ ])", data, re.DOTALL)
    assert subject_lines is not None
    assert subject_lines.group(0).count(b"=?utf-8?b?") > 1


def test_html_with_long_lines_round_trips() -> None:
    html = "<table><tr><td>" + "Zoë " * 2000 + "</td></tr></table>"
    message = parse(build_message(sample(html=html)))
    html_part = parts(message)[1]
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_part.get_content().rstrip("\r\n") == html


def test_plain_ascii_parts_are_sent_as_7bit() -> None:
    text = "Hello there.\nSecond line with trailing space \n"
    message = parse(build_message(sample(text=text, html="<p>plain</p>")))
    text_part, html_part = parts(message)
    assert text_part["Content-Transfer-Encoding"] == "7bit"
    assert text_part.get_content().replace("\r\n", "\n") == text
    assert html_part.get_content().rstrip("\r\n") == "<p>plain</p>"


def test_subject_newlines_cannot_inject_headers() -> None:
    message = parse(build_message(sample(subject="Hello\r\nBcc: victim@example.test")))
    assert message["Bcc"] is None
    assert message["Subject"] == "Hello Bcc: victim@example.test"


def test_literal_encoded_word_in_ascii_subject_is_preserved() -> None:
    subject = "Literally =?utf-8?b?SGk=?= here"
    assert parse(build_message(sample(subject=subject)))["Subject"] == subject


@pytest.mark.parametrize(
    "overrides",
    [
        {"headers": {"X-Bad": "a\r\nBcc: x@y.test"}},
        {"headers": {"Subject": "override"}},
        {"headers": {"Bad Name": "v"}},
        {"unsubscribe_url": "https://acme.test/u/a b"},
        {"message_id": "no-brackets@acme.test"},
        {"date": datetime(2026, 1, 1, 9, 0)},  # noqa: DTZ001 - naive on purpose
        {"to_addr": "not an address"},
    ],
)
def test_rejects_unsafe_input(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_message(sample(**overrides))


def test_date_defaults_to_now_and_keeps_offset() -> None:
    message = parse(build_message(sample(date=None)))
    sent = parsedate_to_datetime(message["Date"])
    assert abs(sent - datetime.now(UTC)) < timedelta(minutes=1)
    plus_two = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert "+0200" in parse(build_message(sample(date=plus_two)))["Date"]


def test_idna_domain_is_encoded() -> None:
    message = parse(build_message(sample(to_addr="Jörg <jorg@bücher.test>")))
    assert message["To"].addresses[0].addr_spec == "jorg@xn--bcher-kva.test"


def test_envelope_address() -> None:
    assert envelope_address("Zoë Müller <zoe@example.test>") == "zoe@example.test"
    assert envelope_address("zoe@example.test") == "zoe@example.test"
    with pytest.raises(ValueError):
        envelope_address("Zoë")


def test_make_message_id() -> None:
    ids = {make_message_id("acme.test") for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"<[A-Za-z0-9_-]+@acme\.test>", i) for i in ids)
    with pytest.raises(ValueError):
        make_message_id("bad domain")
