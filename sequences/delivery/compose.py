"""Composing an email step: the copy request, the rendered message, its bytes as sent."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from agents.copy import (
    CopyRequest,
    Cta,
    Draft,
    EngagementSummary,
    Fallback,
    Preview,
    VariantOption,
)
from agents.quarantine import quarantine
from sequences.definitions.document import EmailSpec, EmailStep
from sequences.definitions.document import Fallback as FallbackSpec
from sequences.definitions.sandbox import render_template
from sequences.deps import Deps
from sequences.engine import outbox
from sequences.engine.flow import RunContext
from sequences.mail.dkim import Unsigned
from sequences.mail.mime import OutgoingEmail, build_message, make_message_id, split_address
from sequences.mail.render import EmailCopy, LayoutRenderer, RenderedEmail
from sequences.mail.tags import tag_headers
from sequences.signals.adaptive import stable_pick
from sequences.store.tables import (
    MessageState,
    new_id,
)


@dataclass
class Outgoing:
    """A message as stored: enough to rebuild the exact bytes for a retry."""

    id: str
    message_id: str
    token: str
    to_addr: str
    subject: str
    text_body: str
    html_body: str
    created_at: datetime
    attempts: int = 0
    links: list[dict[str, Any]] = field(default_factory=list)
    variant: str | None = None
    open_token: str | None = None  # the pixel's; ``token`` is the unsubscribe link's


def copy_request(
    ctx: RunContext,
    step: EmailStep,
    engagement: EngagementSummary,
    *,
    needs_review: bool = False,
    prompt_version: str = "v1",
) -> CopyRequest:
    """What the agent needs for this step and contact; fallbacks are rendered here, once."""
    ids = [v.id or "" for v in step.email.variants]
    return build_request(
        StepView(ctx.sequence_key, step.id, step.email, sender_view(ctx)),
        ctx.contact_view(),
        engagement,
        preferred_variant=stable_pick(ctx.enrollment_id, step.id, ids) if ids else None,
        needs_review=needs_review,
        prompt_version=ctx.definition.prompt or prompt_version,
        refused_copy=ctx.definition.refused_copy_policy,
    )


@dataclass(frozen=True)
class StepView:
    """An email step as the copy request needs it: no enrollment, no database."""

    sequence_key: str
    step_id: str
    email: EmailSpec
    sender: dict[str, str]  # {"name", "email"}, as fallback templates see ``sender``


def build_request(
    step: StepView,
    contact: dict[str, Any],
    engagement: EngagementSummary,
    *,
    preferred_variant: str | None = None,
    needs_review: bool = False,
    prompt_version: str = "v1",
    refused_copy: Literal["skip", "hold"] = "skip",
) -> CopyRequest:
    """The copy request for ``contact`` at ``step``: the engine's and the eval suites' alike."""
    spec = step.email
    clean, held = as_written(contact)
    context = {"contact": clean, "sender": step.sender, "step": {"id": step.step_id}}

    def rendered(fallback: FallbackSpec) -> Fallback:
        return Fallback(
            subject=render_template(fallback.subject, context),
            preheader=render_template(fallback.preheader, context),
            body=render_template(fallback.body, context),
        )

    return CopyRequest(
        sequence_key=step.sequence_key,
        step_id=step.step_id,
        brief=spec.brief,
        fallback=rendered(spec.fallback),
        contact=clean,
        held_fields=held,
        refused_copy=refused_copy,
        sender_name=step.sender["name"],
        cta=Cta(text=spec.cta.text, url=str(spec.cta.url)) if spec.cta else None,
        variants=tuple(VariantOption(id=v.id or "", angle=v.angle) for v in spec.variants),
        preferred_variant=preferred_variant,
        variant_fallbacks={v.id or "": rendered(v.fallback) for v in spec.variants if v.fallback},
        allowed_links=tuple(str(u) for u in spec.links),
        engagement=engagement,
        prompt_version=prompt_version,
        needs_review=needs_review,
    )


def as_written(contact: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The contact as copy and prompts may quote it, and the fields held back (see
    agents.quarantine): a URL, markup, template syntax, control characters, instruction-like
    text or an over-long value is missing, so the template's ``default(...)`` stands in, and
    ``"   "`` is no name at all, so ``default('there', true)`` greets "there"."""
    clean, held = quarantine(contact)
    return clean, tuple(str(field) for field in held)


def preview_renderer(deps: Deps, ctx: RunContext, step: EmailStep) -> Callable[[Draft], Preview]:
    """How the agent sees a draft in its layout: the real layout, with placeholder links."""
    unsubscribe = unsubscribe_url(deps, "preview")

    def render(draft: Draft) -> Preview:
        rendered = _render(deps, ctx, step, draft, unsubscribe, pixel_url=None)
        return Preview(html=rendered.html, text=rendered.text, unsubscribe_url=unsubscribe)

    return render


def _render(
    deps: Deps,
    ctx: RunContext,
    step: EmailStep,
    draft: Draft,
    unsubscribe: str,
    *,
    pixel_url: str | None,
    link_rewriter: Callable[[str], str] | None = None,
) -> RenderedEmail:
    """A draft in the step's layout: the one rendering that previews and sends share."""
    sender = sender_view(ctx)
    return render_draft(
        deps.renderer,
        step.email.layout or ctx.definition.layout,
        draft,
        unsubscribe_url=unsubscribe,
        pixel_url=pixel_url,
        sender_line=f"{sender['name']} · {sender['email']}",
        link_rewriter=link_rewriter,
    )


def render_draft(
    renderer: LayoutRenderer,
    layout: str,
    draft: Draft,
    *,
    unsubscribe_url: str,
    sender_line: str,
    pixel_url: str | None = None,
    link_rewriter: Callable[[str], str] | None = None,
) -> RenderedEmail:
    """A draft's copy in ``layout``, as the recipient sees it (eval reports show the same)."""
    copy = EmailCopy(
        subject=draft.subject,
        preheader=draft.preheader,
        paragraphs=draft.paragraphs,
        cta_text=draft.cta_text,
        cta_url=draft.cta_url,
    )
    return renderer.render(
        layout,
        copy,
        unsubscribe_url=unsubscribe_url,
        pixel_url=pixel_url,
        sender_line=sender_line,
        link_rewriter=link_rewriter,
    )


def sender_view(ctx: RunContext) -> dict[str, str]:
    name, address = split_address(ctx.definition.sender.from_)
    return {"name": name or address, "email": address}


def render_message(
    deps: Deps, ctx: RunContext, step: EmailStep, draft: Draft, now: datetime
) -> Outgoing:
    base = deps.settings.public_url.rstrip("/")
    message_pk = new_id("msg")
    # Drawn apart, so no token leads to another: a pixel URL in a proxy's log cannot
    # unsubscribe, and a forwarded link cannot be turned into the pixel or the unsubscribe.
    token, open_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    links: list[dict[str, Any]] = []

    def track(url: str) -> str:
        link_token = secrets.token_urlsafe(12)
        links.append({"message_pk": message_pk, "token": link_token, "url": url})
        return f"{base}/t/c/{link_token}"

    unsubscribe = unsubscribe_url(deps, token)
    pixel = f"{base}/t/o/{open_token}"
    rendered = _render(deps, ctx, step, draft, unsubscribe, pixel_url=pixel, link_rewriter=track)
    domain = sender_view(ctx)["email"].rpartition("@")[2] or "dripline.local"
    return Outgoing(
        id=message_pk,
        message_id=make_message_id(deps.settings.dkim_domain or domain),
        token=token,
        to_addr=ctx.email,
        subject=draft.subject,
        text_body=rendered.text,
        html_body=rendered.html,
        created_at=now,
        links=links,
        variant=draft.variant,
        open_token=open_token,
    )


def unsubscribe_url(deps: Deps, token: str) -> str:
    """The one address behind both the body's link and the List-Unsubscribe header."""
    return f"{deps.settings.public_url.rstrip('/')}/u/{token}"


def outgoing_from_row(row: Any) -> Outgoing:
    """A stored message (see ``message_row``) back as the Outgoing it was made from."""
    return Outgoing(
        id=row.id,
        message_id=row.message_id,
        token=row.token,
        to_addr=row.to_addr,
        subject=row.subject,
        text_body=row.text_body,
        html_body=row.html_body,
        created_at=row.created_at,
        attempts=row.attempts,
        variant=row.variant,
        open_token=row.open_token,
    )


def message_row(
    message: Outgoing,
    claim: outbox.Claim,
    ctx: RunContext,
    step: EmailStep,
    draft: Draft,
) -> dict[str, Any]:
    return {
        "id": message.id,
        "step_run_id": claim.run_id,
        "enrollment_id": ctx.enrollment_id,
        "contact_id": ctx.contact_id,
        "step_id": step.id,
        "variant": draft.variant,
        "message_id": message.message_id,
        "token": message.token,
        "open_token": message.open_token,
        "to_addr": message.to_addr,
        "subject": message.subject,
        "text_body": message.text_body,
        "html_body": message.html_body,
        "copy_source": draft.model,
        "state": MessageState.sending,
        "attempts": 0,
        "created_at": message.created_at,
    }


def message_bytes(deps: Deps, ctx: RunContext, message: Outgoing) -> bytes:
    """The message as sent, signed."""
    data = unsigned_message(deps, ctx, message)
    return data if isinstance(data, bytes) else data.sign()


def unsigned_message(deps: Deps, ctx: RunContext, message: Outgoing) -> bytes | Unsigned:
    """The message's bytes; with DKIM configured, everything but the RSA signature (see
    sequences.mail.dkim.sign_all)."""
    sender = ctx.definition.sender
    data = build_message(
        OutgoingEmail(
            from_addr=sender.from_,
            to_addr=message.to_addr,
            subject=message.subject,
            text=message.text_body,
            html=message.html_body,
            message_id=message.message_id,
            unsubscribe_url=unsubscribe_url(deps, message.token),
            reply_to=sender.reply_to,
            date=message.created_at,
            headers=tag_headers(deps.settings.esp, message.id) if deps.settings.esp else {},
        )
    )
    signer = deps.signers.for_address(sender.from_) if deps.signers else None
    return signer.prepare(data) if signer else data
