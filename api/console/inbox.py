"""The dev inbox: what the embedded SMTP capture server received, newest first, rendered."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from api.console.framing import framed
from api.console.web import SessionDep, page
from api.deps import ReadConnDep
from sequences.errors import NotFound
from sequences.store.tables import MESSAGES

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE_SIZE = 50
_NAME = re.compile(r"^[0-9A-Za-z]+-[0-9]+$")  # what the capture server names its files
_PARSER = BytesParser(policy=policy.default)
SHOWN_HEADERS = ("From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe")


@dataclass(frozen=True)
class Captured:
    name: str
    to: str
    sender: str
    subject: str
    date: str


def inbox_dir(request: Request) -> Path | None:
    directory: Path | None = getattr(request.app.state, "inbox", None)
    return directory


@router.get("/inbox")
async def inbox_page(
    request: Request,
    session: SessionDep,
    to: Annotated[str, Query(max_length=320)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    directory = inbox_dir(request)
    names = _names(directory)
    if to.strip():
        wanted = to.strip().lower()
        shown = [c for c in (_summary(directory, n) for n in names) if wanted in c.to.lower()]
    else:
        shown = [_summary(directory, n) for n in names[: PAGE_SIZE * page_number]]
    start = PAGE_SIZE * (page_number - 1)
    return page(
        request,
        "inbox.html",
        session,
        directory=directory,
        total=len(names),
        emails=shown[start : start + PAGE_SIZE],
        more=len(shown) > start + PAGE_SIZE or (not to.strip() and len(names) > start + PAGE_SIZE),
        page_number=page_number,
        to=to,
    )


def _names(directory: Path | None) -> list[str]:
    if directory is None or not directory.is_dir():
        return []
    return sorted((p.stem for p in directory.glob("*.eml")), reverse=True)


def _read(directory: Path | None, name: str, *, headers_only: bool = False) -> EmailMessage:
    if directory is None or not _NAME.match(name) or not (directory / f"{name}.eml").is_file():
        raise NotFound("unknown_email", f"no captured email '{name}'")
    raw = (directory / f"{name}.eml").read_bytes()
    if headers_only:  # a list shows four headers: parsing the MIME parts would be most of it
        raw = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0] + b"\r\n\r\n"
    message = _PARSER.parsebytes(raw, headersonly=headers_only)
    assert isinstance(message, EmailMessage)
    return message


def _summary(directory: Path | None, name: str) -> Captured:
    message = _read(directory, name, headers_only=True)
    return Captured(
        name,
        str(message["To"] or ""),
        str(message["From"] or ""),
        str(message["Subject"] or ""),
        str(message["Date"] or ""),
    )


@router.get("/inbox/{name}")
async def email_page(
    name: str, request: Request, conn: ReadConnDep, session: SessionDep
) -> HTMLResponse:
    message = _read(inbox_dir(request), name)
    sent = None
    if message["Message-ID"]:  # ours carry the Message-ID stored with the message
        sent = (
            await conn.execute(
                select(MESSAGES.c.enrollment_id, MESSAGES.c.step_id).where(
                    MESSAGES.c.message_id == str(message["Message-ID"]).strip()
                )
            )
        ).first()
    text = message.get_body(("plain",))
    dkim = str(message.get("DKIM-Signature", ""))
    return page(
        request,
        "email.html",
        session,
        name=name,
        headers=[(h, str(message[h])) for h in SHOWN_HEADERS if message[h]],
        dkim=_dkim_summary(dkim),
        has_html=message.get_body(("html",)) is not None,
        text=text.get_content() if text is not None else "",
        sent=sent,
    )


def _dkim_summary(signature: str) -> str:
    """``d=acme.test s=dripline`` from a DKIM-Signature header, or empty when unsigned."""
    tags = dict(part.strip().split("=", 1) for part in signature.split(";") if "=" in part)
    return " ".join(f"{k}={tags[k].strip()}" for k in ("d", "s", "a") if k in tags)


@router.get("/inbox/{name}/html")
async def email_html(name: str, request: Request, _: SessionDep) -> HTMLResponse:
    body = _read(inbox_dir(request), name).get_body(("html",))
    if body is None:
        raise NotFound("no_html_part", f"captured email '{name}' has no HTML part")
    return framed(str(body.get_content()))
