"""The ``recplay`` command: a click group over the same domain the API and the workers use."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tasks.errors import ConfigError, InvalidId
from tasks.ids import check_id

# Exit codes: 0 done (also "nothing to do"), 1 failed, 2 bad usage (click's own).
FAILED = 1


def _settings() -> Any:
    from tasks.settings import get_settings

    return get_settings()


def _client() -> Any:
    from tasks.redis_client import get_redis

    return get_redis()


def _valid_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_id(value, "id")
    except InvalidId as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis-url", envvar="REDIS_URL", default=None, help="Redis URL (env REDIS_URL).")
def cli(redis_url: str | None) -> None:
    """Operate recplay: tokens, the queue, the slots."""
    import os

    if redis_url:
        os.environ["REDIS_URL"] = redis_url


@cli.command()
@click.argument("business_id", callback=_valid_id)
@click.option("--ttl", type=click.IntRange(min=1), default=3600, show_default=True, help="Lifetime in seconds.")
def token(business_id: str, ttl: int) -> None:
    """Print an access token for BUSINESS_ID."""
    from tasks.access import mint_token

    try:
        click.echo(mint_token(_settings(), business_id, ttl))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(FAILED)


def _print_overview(data: dict[str, Any]) -> None:
    click.echo(f"queue length: {data['queue_length']}")
    if not data["businesses"]:
        click.echo("no businesses yet")
        return
    click.echo(f"{'BUSINESS':<24} {'LIMIT':>5} {'ACTIVE':>6} {'PARKED':>6}")
    for biz in data["businesses"]:
        click.echo(f"{biz['business_id']:<24} {biz['limit']:>5} {biz['active']:>6} {biz['parked']:>6}")
        for h in biz["holders"]:
            worker = h["worker"] or "(reserved for a parked job)"
            click.echo(f"    {h['call_sid']:<24} task {h['task_id']}  worker {worker}  "
                       f"lease {h['lease_seconds_left']:.1f}s left")


@cli.command()
@click.option("--business", "business_id", callback=_valid_id, default=None, help="Only this business.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(business_id: str | None, as_json: bool) -> None:
    """Per business: limit, active, parked, holders; and the queue length."""
    import redis

    from tasks.overview import overview

    try:
        data = overview(_client(), _settings(), business_id)
    except redis.RedisError as exc:
        click.echo(f"error: Redis unreachable: {exc}", err=True)
        sys.exit(FAILED)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        _print_overview(data)


def main() -> None:
    cli(prog_name="recplay")


if __name__ == "__main__":
    main()
