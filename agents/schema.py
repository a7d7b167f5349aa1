"""The structured output the model is asked for. Field descriptions become the schema it reads."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.copy import Finding

SCHEMA_NAME = "email_draft"


class DraftOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(description="The subject line: under 60 characters, no ALL CAPS.")
    preheader: str = Field(description="One sentence the inbox shows after the subject.")
    paragraphs: list[str] = Field(
        description="The body, one plain-text string per paragraph, at most 4, no URLs."
    )
    cta_text: str | None = Field(
        description="The call-to-action button label, or null when the step has none."
    )
    rationale: str = Field(
        description="One line for the human reviewer: why this angle for this recipient."
    )


def output_schema() -> dict[str, Any]:
    """DraftOutput as a strict JSON schema: every property required, nothing else allowed."""
    schema = DraftOutput.model_json_schema()
    schema.pop("title", None)
    schema["required"] = list(schema["properties"])
    schema["additionalProperties"] = False
    for prop in schema["properties"].values():
        prop.pop("title", None)
        if "anyOf" in prop:  # str | None: the strict dialect spells it as a type list
            prop["type"] = [option["type"] for option in prop.pop("anyOf")]
    return schema


def parse_answer(text: str) -> dict[str, Any] | Finding:
    """The model's answer as a dict, or the ``schema_valid`` finding that says what is wrong."""
    try:
        data = json.loads(_unfenced(text))
    except json.JSONDecodeError as error:
        message = f"not JSON: {error.msg} at character {error.pos}"
        return Finding(rule="schema_valid", ok=False, message=message)
    try:
        return DraftOutput.model_validate(data).model_dump()
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return Finding(rule="schema_valid", ok=False, message=f"{where}: {first['msg']}")


def _unfenced(text: str) -> str:
    """Some local servers wrap JSON in a Markdown fence even when asked for a schema."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[-1].rsplit("```", 1)[0]
    return stripped
