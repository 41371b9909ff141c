"""The ``recplay`` command: a click group over the same domain the API and the workers use.

Every repair lives in :mod:`tasks.ops.repair`; the commands here parse, call and print. Options fall back to the
environment (``REDIS_URL``, ``DATABASE_URL``, ``RECPLAY_DATA_DIR``, ``RECPLAY_PING_TIMEOUT``). Exit codes:
0 done (also "Nothing to do"), 1 failed, 2 bad usage.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import redis
from kombu.exceptions import OperationalError
from sqlalchemy.exc import SQLAlchemyError

from tasks import app
from tasks.access import SCOPES, mint_token
from tasks.errors import InvalidBody, InvalidId, RecplayError
from tasks.ids import check_id
from tasks.ops import repair
from tasks.ops.overview import overview
from tasks.ops.tenancy import bind_twilio
from tasks.ops.workers import check_workers, heartbeat_ages
from tasks.recordings import Recordings
from tasks.settings import Settings, get_settings, reset_settings
from tasks.slots.client import get_redis, reset_redis

FAILED = 1
#: Parked jobs named per business (the counts cover them all).
FIRST_SHOWN = 10
F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Settings:
    return get_settings()


def _client() -> redis.Redis:
    return get_redis()


def _valid_id(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_id(value, param.name or "id")
    except InvalidId as exc:
        raise click.BadParameter(str(exc)) from exc


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(FAILED)


def reports_errors(command: F) -> F:
    """Turn the failures an operator can meet (Redis, broker or database down, bad config) into exit 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except redis.RedisError as exc:
            _fail(f"Redis unreachable or refused the command: {exc}")
        except OperationalError as exc:
            _fail(f"the broker is unreachable: {exc}")
        except SQLAlchemyError as exc:
            _fail(f"the database is unreachable: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        except RecplayError as exc:
            _fail(str(exc))
        return None

    return wrapper  # type: ignore[return-value]


def _ping_timeout_option(command: F) -> F:
    return click.option(
        "--ping-timeout", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
        envvar="RECPLAY_PING_TIMEOUT",
        help="Seconds to wait for workers to answer a ping (env RECPLAY_PING_TIMEOUT).",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis-url", envvar="REDIS_URL", default=None, help="Redis URL (env REDIS_URL).")
@click.option("--database-url", envvar="DATABASE_URL", default=None,
              help="Catalog database (env DATABASE_URL).")
@click.option("--data-dir", envvar="RECPLAY_DATA_DIR", default=None,
              help="Media store and SQLite directory (env RECPLAY_DATA_DIR).")
def cli(redis_url: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Operate recplay: tokens, the queue, the slots."""
    given = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "RECPLAY_DATA_DIR": data_dir}
    for name, value in given.items():
        if value:
            os.environ[name] = value
    reset_settings()
    reset_redis()


@cli.command()
@click.argument("business_id", callback=_valid_id)
@click.option("--ttl", type=click.IntRange(min=1), default=3600, show_default=True,
              help="Lifetime in seconds.")
@click.option("--scope", type=click.Choice(SCOPES), default=None,
              help="play (list, status, fetch, stream: for a player) or manage (also register and delete). "
                   "Without it the token has every right: for back ends only.")
@reports_errors
def token(business_id: str, ttl: int, scope: str | None) -> None:
    """Print an access token for BUSINESS_ID."""
    click.echo(mint_token(_settings(), business_id, ttl, scope=scope))


def _print_overview(data: dict[str, Any], workers: dict[str, Any], heartbeat: float) -> None:
    click.echo(f"queue length: {data['queue_length']} (download messages waiting for a worker)")
    if not data["businesses"]:
        click.echo("no businesses yet")
        return
    click.echo(f"{'BUSINESS':<24} {'LIMIT':>5} {'ACTIVE':>6} {'PARKED':>6}")
    for biz in data["businesses"]:
        click.echo(f"{biz['business_id']:<24} {biz['limit']:>5} {biz['active']:>6} {biz['parked']:>6}")
        if biz["first_parked"]:
            more = " ..." if biz["parked"] > len(biz["first_parked"]) else ""
            click.echo(f"    parked, oldest first: {', '.join(biz['first_parked'])}{more}")
        for h in biz["holders"]:
            if h["worker"] is None:
                who = "reserved for a parked job (its task has not claimed it yet)"
            else:
                state = workers.get(h["worker"])
                who = f"worker {h['worker']}" + (f" ({state.describe(heartbeat)})" if state else "")
            lease = f"lease {h['lease_seconds_left']:.1f}s left"
            click.echo(f"    {h['call_sid']:<24} task {h['task_id']}  {who}  {lease}")


@cli.command()
@click.option("--business", "business_id", callback=_valid_id, default=None, help="Only this business.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (workers are not pinged).")
@_ping_timeout_option
@reports_errors
def status(business_id: str | None, as_json: bool, ping_timeout: float) -> None:
    """Per business: limit, active, parked, holders (with their worker's state); and the queue length."""
    client, settings = _client(), _settings()
    data = overview(client, settings, business_id)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    names = {h["worker"] for b in data["businesses"] for h in b["holders"] if h["worker"]}
    workers = check_workers(app, client, names, ping_timeout)
    _print_overview(data, workers, settings.worker_heartbeat_seconds)


def _print_plan(plan: Any) -> None:
    click.echo("Plan:")
    for r in plan.releases:
        who = f"worker {r.worker}" if r.worker else "reservation"
        click.echo(f"  release slot  {r.business_id}/{r.call_sid}  task {r.task_id}  {who}: {r.reason}")
    for j in plan.jobs:
        click.echo(f"  {j.action:<12}  {j.business_id}/{j.call_sid}: {j.reason}")


@cli.command("purge-stuck")
@click.option("--business", "business_id", callback=_valid_id, default=None, help="Only this business.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_ping_timeout_option
@reports_errors
def purge_stuck(business_id: str | None, dry_run: bool, as_json: bool, ping_timeout: float) -> None:
    """Release slots whose lease expired or whose worker is gone; requeue their jobs; re-send overdue jobs.

    A worker is gone when it missed its heartbeats or does not answer a ping; a slot is also released when
    its worker answers but no longer runs the task holding it (it restarted under the same name). Free
    slots then go to parked jobs.
    """
    client, settings = _client(), _settings()
    plan = repair.plan_repair(app, client, settings, business_id, ping_timeout)
    result = None if plan.empty or dry_run else repair.apply_repair(client, settings, plan, business_id)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "nothing_to_do": plan.empty, "plan": plan.as_dict(),
                               "done": result.as_dict() if result else None}, indent=2))
        return
    if plan.empty:
        click.echo("Nothing to do: no expired lease, no gone worker, no stuck job.")
        return
    _print_plan(plan)
    if result is None:
        click.echo("Dry run: nothing changed.")
        return
    sweep = result.sweep
    click.echo(f"Done: released {len(result.evicted) + sweep.reclaimed} slots ({len(result.evicted)} of gone "
               f"workers, {sweep.reclaimed} expired), sent {len(sweep.dispatched)} download messages, "
               f"failed {len(sweep.failed)} jobs, re-requested {len(sweep.rerequested)}.")


@cli.command("purge-queue")
@click.option("--business", "business_id", callback=_valid_id, required=True, help="The business.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def purge_queue(business_id: str, yes: bool) -> None:
    """Drop a business's waiting jobs (parked or queued, not running); their recordings return to new."""
    client, settings = _client(), _settings()
    count, first = repair.waiting_jobs(client, business_id, FIRST_SHOWN)
    if not count:
        click.echo(f"Nothing to do: {business_id} has no waiting jobs.")
        return
    more = f" and {count - len(first)} more" if count > len(first) else ""
    click.echo(f"{count} waiting jobs of {business_id}: {', '.join(first)}{more}")
    if not yes:
        click.confirm("Drop them? Their recordings return to new", abort=True)
    done = repair.purge_queue(client, settings, business_id)
    click.echo(f"Dropped {len(done.dropped)} waiting jobs of {business_id}; "
               f"{len(done.returned_to_new)} recordings are new again.")


@cli.command("set-limit")
@click.argument("business_id", callback=_valid_id)
@click.argument("limit", type=click.IntRange(min=1), metavar="N")
@reports_errors
def set_limit(business_id: str, limit: int) -> None:
    """Set BUSINESS_ID's concurrent downloads to N, now; a raise hands slots to parked jobs at once."""
    done = repair.set_limit(_client(), _settings(), business_id, limit)
    if done.previous == limit and not done.handed:
        click.echo(f"Nothing to do: the limit of {business_id} is already {limit}.")
        return
    click.echo(f"{business_id}: limit {limit} (was {done.previous}); "
               f"{len(done.handed)} parked jobs handed a slot.")


@cli.command()
@click.argument("business_id", callback=_valid_id)
@click.argument("call_sid", callback=_valid_id)
@reports_errors
def retry(business_id: str, call_sid: str) -> None:
    """A new attempt for a failed recording."""
    done = repair.retry(_client(), _settings(), business_id, call_sid)
    if not done.retried:
        click.echo(f"Nothing to do: {business_id}/{call_sid} is {done.before.status}, not failed.")
        return
    # The status right after enqueueing races with the worker; what is certain is that it was enqueued.
    click.echo(f"{business_id}/{call_sid}: new attempt enqueued (it had failed: {done.before.error}).")


@cli.command("twilio-bind")
@click.argument("business_id", callback=_valid_id)
@click.argument("account_sid")
@reports_errors
def twilio_bind(business_id: str, account_sid: str) -> None:
    """Bind BUSINESS_ID to the Twilio account ACCOUNT_SID (a subaccount, usually): its recordings, CallSids and
    status callbacks of any other account are refused from now on."""
    try:
        done = bind_twilio(_settings(), business_id, account_sid)
    except InvalidBody as exc:
        raise click.BadParameter(str(exc), param_hint="ACCOUNT_SID") from exc
    if not done.changed:
        click.echo(f"Nothing to do: {business_id} is already bound to {account_sid}.")
        return
    was = f" (was {done.previous})" if done.previous else " (was unbound)"
    click.echo(f"{business_id}: bound to Twilio account {account_sid}{was}.")


@cli.command("backfill-peaks")
@click.option("--business", "business_id", callback=_valid_id, default=None, help="Only this business.")
@reports_errors
def backfill_peaks(business_id: str | None) -> None:
    """Compute the waveform peaks of ready recordings stored before downloads were decoded.

    Each becomes a job under its business's slots, like a download: the worker decodes the stored file (it is
    not downloaded again) and keeps its peaks beside it.
    """
    client, settings = _client(), _settings()
    asked = Recordings.backfill_peaks(client, settings, business_id)
    if not asked:
        click.echo("Nothing to do: every ready recording has its peaks.")
        return
    click.echo(f"Asked for the peaks of {asked} recordings; workers compute them under each business's slots.")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_ping_timeout_option
@reports_errors
def workers(as_json: bool, ping_timeout: float) -> None:
    """Every worker that has written a heartbeat: how long ago, and whether it answers a ping."""
    client, settings = _client(), _settings()
    states = check_workers(app, client, heartbeat_ages(client), ping_timeout)
    heartbeat = settings.worker_heartbeat_seconds
    rows = [{"worker": s.name, "last_heartbeat_seconds_ago": s.heartbeat_age, "answers_ping": s.answered,
             "gone": s.gone(heartbeat)} for s in states.values()]
    if as_json:
        click.echo(json.dumps({"workers": rows}, indent=2))
    elif not rows:
        click.echo("no worker has written a heartbeat")
    else:
        for s in states.values():
            click.echo(f"{s.name:<40} {'GONE' if s.gone(heartbeat) else 'alive':<5}  {s.describe(heartbeat)}")


def main() -> None:
    cli(prog_name="recplay")


if __name__ == "__main__":
    main()
