"""``dripline eval``: prompt regression suites from the command line.

Exit status: 0 the gate passed; 1 the gate failed (the candidate is worse); 2 the run could not
be made as asked (a bad suite, an unknown prompt version or assertion, no endpoint for the
model, a missing recording in replay mode, an unreachable model).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agents.config import ModelConfig
from evals.settings import EvalSettings
from sequences.settings import Settings

if TYPE_CHECKING:  # the rest is imported when a command runs: `dripline --help` stays quick
    from evals.reports.model import Report
    from evals.session import Plan

EXIT_PASSED, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2

eval_app = typer.Typer(help="Prompt regression suites (evals/suites/*.yaml).", no_args_is_help=True)
Opt = typer.Option

Suites = Annotated[list[Path], typer.Argument(help="Suite files, e.g. evals/suites/*.yaml.")]
Prompt = Annotated[str | None, Opt(help="Candidate prompt version [DRIPLINE_PROMPT_VERSION].")]
Baseline = Annotated[str | None, Opt(help="Baseline prompt version to compare with.")]
Model = Annotated[
    str | None, Opt(help="Model [DRIPLINE_MODEL], or offline-composer, or fake-heuristic.")
]
BaselineModel = Annotated[str | None, Opt(help="The baseline's model (default: --model).")]
JudgeModel = Annotated[
    str | None, Opt(help="Pinned judge model [DRIPLINE_JUDGE_MODEL]; unset: judge skipped.")
]
Record = Annotated[bool, Opt("--record", help="Also write answers to the recordings.")]
Replay = Annotated[bool, Opt("--replay", help="Answer from recordings only; never a model.")]
Concurrency = Annotated[int, Opt(min=1, max=64, help="Cases run at once.")]
MaxDrop = Annotated[float, Opt(min=0, help="Allowed pass-rate drop from the baseline, points.")]
Floor = Annotated[float, Opt(min=0, max=100, help="Pass-rate floor, per cent.")]
Output = Annotated[Path | None, Opt(help="Write this report to a file.")]
JsonOutput = Annotated[Path | None, Opt("--json", help="Write the JSON report to a file.")]
CacheDir = Annotated[Path | None, Opt(help="Response cache [DRIPLINE_EVAL_CACHE].")]
NoCache = Annotated[bool, Opt("--no-cache", help="Neither read nor write the cache.")]
Recordings = Annotated[Path, Opt(help="The recordings folder (one subfolder per suite).")]
PromptsDir = Annotated[Path | None, Opt(help="A folder with drafting/<version>/ to try first.")]
ShowProgress = Annotated[bool, Opt(help="A progress bar on stderr.")]


@eval_app.command("run")
def run_command(
    suites: Suites,
    prompt: Prompt = None,
    baseline: Baseline = None,
    model: Model = None,
    baseline_model: BaselineModel = None,
    judge_model: JudgeModel = None,
    record: Record = False,
    replay: Replay = False,
    concurrency: Concurrency = 4,
    max_drop: MaxDrop = 2.0,
    min_pass_rate: Floor = 0.0,
    html: Output = None,
    json_path: JsonOutput = None,
    junit: Output = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    recordings: Recordings = Path("evals/recordings"),
    prompts_dir: PromptsDir = None,
    progress: ShowProgress = True,
) -> None:
    """Run suites for a candidate prompt (and a baseline), report, and gate on the pass rate."""
    from evals.cache import Mode
    from evals.gate import Policy
    from evals.session import Plan

    if record and replay:
        raise _usage("--record and --replay exclude each other")
    settings, eval_settings = Settings(), EvalSettings()
    config = settings.agent_model
    plan = Plan(
        suites=tuple(suites),
        prompt=prompt or settings.prompt_version,
        model=replace(config, model=model) if model else config,
        baseline=baseline,
        baseline_model=replace(config, model=baseline_model) if baseline_model else None,
        judge=_judge(config, eval_settings, judge_model),
        mode=Mode.replay if replay else Mode.record if record else Mode.live,
        cache_dir=None if no_cache else cache_dir or eval_settings.cache_dir,
        recordings=recordings,
        prompts_dir=prompts_dir,
        concurrency=concurrency,
        policy=Policy(max_drop=max_drop, min_pass_rate=min_pass_rate),
        progress=progress,
    )
    report = _execute(plan)
    _write(report, html=html, json_path=json_path, junit=junit)
    raise typer.Exit(EXIT_PASSED if report.verdict.passed else EXIT_GATE_FAILED)


@eval_app.command("assertions")
def assertions_command() -> None:
    """List the assertions a suite may use, with their documentation."""
    from evals.assertions import ASSERTIONS

    for name, assertion in ASSERTIONS.items():
        typer.secho(name, bold=True)
        typer.echo("    " + assertion.doc.replace("\n", "\n    ") + "\n")


@eval_app.command("local-model")
def local_model_command(port: Annotated[int, Opt(help="Port on 127.0.0.1.")] = 8765) -> None:
    """Serve the stand-in model (rules, not an LLM) over the OpenAI API: how recordings are made."""
    import uvicorn

    from agents.devserver import HEURISTIC_MODEL, HeuristicResponder, openai_app

    typer.echo(
        f"OPENAI_BASE_URL=http://127.0.0.1:{port}/v1 (model {HEURISTIC_MODEL}: a stand-in that "
        "writes by rules, not an LLM; its token counts are simulated)",
        err=True,
    )
    app = openai_app(HeuristicResponder(), models=(HEURISTIC_MODEL,))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _judge(config: ModelConfig, settings: EvalSettings, model: str | None) -> ModelConfig | None:
    """The judge's endpoint: its own when set, else the drafting model's."""
    name = model or settings.judge_model
    if not name:
        return None
    return replace(
        config,
        model=name,
        base_url=settings.judge_base_url or config.base_url,
        api_key=settings.judge_api_key or config.api_key,
    )


def _execute(plan: Plan) -> Report:
    from evals.session import CasesFailed, execute
    from evals.sides import UsageError
    from evals.suites import SuiteError

    try:
        return asyncio.run(execute(plan))
    except (SuiteError, UsageError) as error:
        raise _usage(str(error)) from None
    except CasesFailed as error:
        for result in error.failed:
            typer.secho(f"error: {result.case.key} ({result.side}): {result.error}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _write(
    report: Report, *, html: Path | None, json_path: Path | None, junit: Path | None
) -> None:
    from rich.console import Console

    from evals.reports import html as html_report
    from evals.reports import json as json_report
    from evals.reports import junit as junit_report
    from evals.reports import terminal

    width = None if os.isatty(1) else 160  # CI logs: wide enough that the table does not wrap
    terminal.render(report, Console(width=width))
    if html:
        _save(html, html_report.to_html(report))
    if json_path:
        _save(json_path, json.dumps(json_report.to_json(report), indent=2, ensure_ascii=False))
    if junit:
        _save(junit, junit_report.to_junit(report))


def _save(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {path}", err=True)


def _usage(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(EXIT_USAGE)
