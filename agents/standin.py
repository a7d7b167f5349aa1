"""The stand-in models: ours, not a provider's, so what they report is not a measurement.

The in-process fake (agents.fake) and the local OpenAI-compatible server (agents.devserver)
answer under these names, and no hosted model uses them. Their token counts come from a
length formula, their cached tokens from a guess at what a provider would cache, their latency
from this machine: every report that shows such a figure labels it simulated.
"""

from __future__ import annotations

from collections.abc import Iterable

LOCAL_MODEL = "dripline-local"  # the dev server's scripted answers
HEURISTIC_MODEL = "dripline-local-heuristic"  # the dev server writing from the prompt
FAKE_MODEL = "fake-heuristic"  # agents.fake in process (evals' --model fake-heuristic)
FUNCTION_MODEL = "function-model"  # agents.fake.FunctionModel's default name

STAND_IN_MODELS = frozenset({LOCAL_MODEL, HEURISTIC_MODEL, FAKE_MODEL, FUNCTION_MODEL})

SIMULATED = "simulated"
NOTICE = (
    "a stand-in model answered (not a provider): its tokens, cost and latency are simulated, "
    "not measured, and nothing was billed"
)


def is_stand_in(model: str) -> bool:
    return model in STAND_IN_MODELS


def any_stand_in(models: Iterable[str]) -> bool:
    return any(is_stand_in(m) for m in models)
