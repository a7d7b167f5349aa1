"""The ``dripline`` command: serve, work, apply sequences, manage keys and DKIM, run the demo."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvloop
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import KeyInfo, Role, create_key, list_keys, revoke_key
from api.preflight import align_public_url, database_problem, unreachable
from evals.command import eval_app
from sequences.definitions import registry
from sequences.definitions.document import SequenceDefinition
from sequences.definitions.loading import parse_definition
from sequences.definitions.refusals import DefinitionError
from sequences.errors import DriplineError
from sequences.mail.dkim import check_names, dns_txt_record
from sequences.mail.render import LayoutRenderer
from sequences.mail.signers import load_or_create_key
from sequences.settings import Settings
from sequences.store import migrate
from sequences.store.db import make_engine

T = TypeVar("T")

app = typer.Typer(help="Dripline: AI-agent email sequences.", no_args_is_help=True)
keys = typer.Typer(help="API keys.", no_args_is_help=True)
dkim = typer.Typer(help="DKIM signing keys.", no_args_is_help=True)
db = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(keys, name="keys")
app.add_typer(dkim, name="dkim")
app.add_typer(db, name="db")
app.add_typer(eval_app, name="eval")


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    worker: Annotated[bool, typer.Option(help="Also run a worker in this process.")] = True,
) -> None:
    """Run the HTTP API (and a worker); unset services start embedded."""
    from api.server import serve_forever

    settings = Settings()
    warning = align_public_url(settings, host, port)  # links in emails lead to this server
    if warning:
        typer.secho(warning, fg=typer.colors.YELLOW, err=True)
    _ensure_data_dir()
    _preflight(settings, settings.redis_url)
    _logging(logging.INFO)
    uvloop.run(serve_forever(settings, host=host, port=port, with_worker=worker))


@app.command("worker")
def run_worker() -> None:
    """Run a worker against REDIS_URL and DATABASE_URL (scale out with more of these)."""
    from sequences.runtime import settle_heap
    from sequences.worker import build_worker, request_stop

    settings = Settings()
    if not settings.redis_url:
        raise _fail(
            "REDIS_URL is not set: a separate worker needs the shared Redis "
            "(or use `dripline serve`)"
        )
    if not settings.smtp_host:
        raise _fail(
            "SMTP_HOST is not set: a separate worker needs a relay (or use `dripline serve`)"
        )
    _preflight(settings, settings.redis_url)
    _logging(logging.INFO)
    redis_url, smtp = settings.redis_url, (settings.smtp_host, settings.smtp_port)

    async def main() -> None:
        # arq binds the worker to the loop it is built in, so build it inside the running loop.
        worker = build_worker(settings, redis_url=redis_url, smtp=smtp)
        settle_heap()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, request_stop, worker, signum)
        with contextlib.suppress(asyncio.CancelledError):  # how a graceful stop ends the run
            await worker.async_run()
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()

    uvloop.run(main())


@app.command()
def apply(path: Path) -> None:
    """Validate a sequence file and apply it; a changed sequence gets a new version."""
    defn = _definition(path)

    async def run() -> registry.Applied:
        engine = make_engine(Settings().resolved_database_url)
        try:
            await migrate.upgrade(engine)
            async with engine.begin() as conn:
                return await registry.apply(conn, defn, datetime.now(UTC))
        finally:
            await engine.dispose()

    _ensure_data_dir()
    applied = _with_database(run())
    state = "new version" if applied.created else "unchanged"
    typer.echo(f"{applied.key}: version {applied.version} ({state})")


@keys.command("create")
def keys_create(
    name: str,
    role: Annotated[Role, typer.Option(help="admin, enroll, reviewer or metrics.")] = Role.admin,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""

    async def run() -> str:
        engine = make_engine(Settings().resolved_database_url)
        try:
            await migrate.upgrade(engine)
            async with engine.begin() as conn:
                return await create_key(conn, name, role, datetime.now(UTC))
        finally:
            await engine.dispose()

    _ensure_data_dir()
    typer.echo(_with_database(run()))


@keys.command("list")
def keys_list(
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
) -> None:
    """List API keys: name, prefix, role, created (and revoked); never a secret."""

    async def run() -> list[KeyInfo]:
        return await _in_transaction(lambda conn: list_keys(conn, revoked=revoked))

    _ensure_data_dir()
    for key in _with_database(run()):
        revoked_at = f"  revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else ""
        created = f"{key.created_at:%Y-%m-%d %H:%M}"
        typer.echo(f"{key.prefix}  {key.role:<8}  {created}  {key.name}{revoked_at}")


@keys.command("revoke")
def keys_revoke(
    name_or_prefix: Annotated[str, typer.Argument(help="The key's name or its prefix (dl_...).")],
) -> None:
    """Revoke a key at once; its console sessions end with it."""

    async def run() -> KeyInfo:
        return await _in_transaction(
            lambda conn: revoke_key(conn, name_or_prefix, datetime.now(UTC))
        )

    _ensure_data_dir()
    try:
        key = _with_database(run())
    except DriplineError as error:
        raise _fail(error.message) from None
    typer.echo(f"revoked {key.prefix} ({key.name}, {key.role})")


async def _in_transaction(job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``job`` in one transaction on the newest schema."""
    engine = make_engine(Settings().resolved_database_url)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            return await job(conn)
    finally:
        await engine.dispose()


@dkim.command("keygen")
def dkim_keygen(
    domain: Annotated[str, typer.Option(help="The signing domain (d=).")],
    selector: Annotated[
        str | None, typer.Option(help="The selector (s=); DKIM_SELECTOR by default.")
    ] = None,
) -> None:
    """Create the RSA-2048 signing key (if missing) and print the DNS TXT record to publish."""
    settings = Settings()
    selector = selector or settings.dkim_selector
    try:
        check_names(domain, selector)
    except ValueError as error:
        raise _fail(str(error)) from None
    path = settings.dkim_key_path
    existed = path.exists()
    pem = load_or_create_key(path)
    typer.echo(f"# key: {path} ({'existing' if existed else 'new'})", err=True)
    typer.echo(dns_txt_record(pem, selector, domain))


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations."""

    async def run() -> None:
        engine = make_engine(Settings().resolved_database_url)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    _ensure_data_dir()
    _with_database(run())
    typer.echo("database is at the newest schema")


@app.command()
def demo(
    contacts: Annotated[int, typer.Option(min=3, max=500)] = 20,
    day_seconds: Annotated[float, typer.Option(help="Real seconds per sequence day.")] = 6.0,
) -> None:
    """Run the example sequence end to end on embedded services and an accelerated clock."""
    from api.demo import run_demo

    _logging(logging.WARNING)
    raise typer.Exit(code=uvloop.run(run_demo(contacts=contacts, day_seconds=day_seconds)))


@app.command()
def simulate(
    sequence: Annotated[Path, typer.Argument(help="A sequence YAML file.")],
    contacts: Annotated[int, typer.Option(min=1, max=20_000)] = 300,
    days: Annotated[float, typer.Option(min=0.5, max=365)] = 20.0,
    seed: Annotated[int, typer.Option(help="Seeds the contacts, their rates and the bandit.")] = 7,
    day_seconds: Annotated[float, typer.Option(min=0.05, help="Real seconds per day.")] = 1.0,
    truth: Annotated[
        Path | None,
        typer.Option(help="YAML of true rates: {rates: {step/variant: {click, reply, convert}}}"),
    ] = None,
) -> None:
    """Run a sequence over synthetic contacts on the real engine and print what it learned.

    Progress goes to stderr. Ctrl-C (or SIGTERM) stops the run cleanly, prints the report so
    far and exits with status 130."""
    from api.simprogress import ProgressLine
    from api.simulate import SimConfig, run_until_stopped
    from api.simulate_report import print_report
    from sequences.simulation import TruthError, load_truth, seeded_truth

    defn = _definition(sequence)
    try:
        rates = load_truth(truth, defn) if truth else seeded_truth(defn, seed)
    except TruthError as error:
        raise _fail(str(error)) from None
    config = SimConfig(contacts=contacts, days=days, seed=seed, day_seconds=day_seconds)
    _logging(logging.WARNING)
    report = asyncio.run(run_until_stopped(defn, rates, config, ProgressLine(days)))
    print_report(report, rates, config)
    if report.interrupted:
        raise typer.Exit(code=130)  # as a shell reports a run stopped by Ctrl-C


def _definition(path: Path) -> SequenceDefinition:
    """A sequence file parsed and checked, or exit 2 with each error's path."""
    try:
        source = path.read_bytes()
    except OSError as error:
        raise _fail(f"{path}: {error.strerror}") from None
    try:
        defn = parse_definition(source)
        registry.check_layouts(defn, LayoutRenderer().exists)
    except DefinitionError as error:
        for item in error.errors:
            typer.secho(f"{path}: {item.path}: {item.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    return defn


def _preflight(settings: Settings, redis_url: str | None) -> None:
    """Exit 2 with one line when the configured Redis or database does not answer."""
    problem = asyncio.run(unreachable(settings, redis_url))
    if problem:
        raise _fail(problem)


def _ensure_data_dir() -> None:
    settings = Settings()
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)


def _logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Every sweep and SMTP connection would log a line a second; keep those for debugging.
    for chatty in ("arq.worker", "arq.jobs", "mail.log", "alembic.runtime.migration"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))


def _with_database(job: Coroutine[Any, Any, T]) -> T:
    """Run a database job; an unreachable or refusing database is a message, not a traceback."""
    try:
        return asyncio.run(job)
    except (OSError, DBAPIError, ArgumentError) as error:
        raise _fail(database_problem(Settings(), error)) from None
