"""The CLI's contract: exit 0 done (also "Nothing to do"), 1 failed, 2 bad usage; options from the env."""

from __future__ import annotations

import json

import pytest

from tests.conftest import free_port, run_cli


@pytest.mark.parametrize("args", [
    ("status", "--business", "not/an/id"),
    ("set-limit", "biz"),
    ("set-limit", "biz", "0"),
    ("set-limit", "biz", "many"),
    ("purge-queue",),
    ("retry", "biz", "../etc"),
    ("token", "a b"),
    ("no-such-command",),
])
def test_bad_usage_exits_2(data_dir, args):
    result = run_cli(*args, check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Usage:" in result.stderr


@pytest.mark.parametrize("args", [
    ("status",),
    ("status", "--json"),
    ("purge-stuck", "--dry-run"),
    ("purge-queue", "--business", "biz", "--yes"),
    ("set-limit", "biz", "2"),
])
def test_an_unreachable_redis_fails_with_exit_1(data_dir, args):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli(*args, env={"REDIS_URL": dead}, check=False)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: Redis unreachable"), result.stderr


def test_an_unusable_database_fails_with_exit_1(data_dir):
    unusable = {"DATABASE_URL": "sqlite:////dev/null/no/recplay.db"}
    result = run_cli("retry", "biz", "CA1", env=unusable, check=False)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: the database is unreachable"), result.stderr


def test_the_redis_url_option_wins_over_the_environment(data_dir):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert run_cli("--redis-url", dead, "status", check=False).returncode == 1
    assert run_cli("status").returncode == 0  # REDIS_URL from the environment: the test's Redis


def test_nothing_to_do_exits_0_and_says_so(data_dir):
    assert run_cli("purge-stuck").stdout.startswith("Nothing to do")
    assert run_cli("purge-queue", "--business", "idle", "--yes").stdout.startswith("Nothing to do")
    assert run_cli("set-limit", "idle", "4").stdout.startswith("idle: limit 4 (was 5)")
    assert run_cli("set-limit", "idle", "4").stdout.startswith("Nothing to do")
    plan = json.loads(run_cli("purge-stuck", "--json").stdout)
    assert plan == {"dry_run": False, "nothing_to_do": True, "plan": {"release": [], "jobs": []},
                    "done": None}


def test_status_json_has_exactly_the_documented_shape(data_dir):
    run_cli("set-limit", "shape", "3")
    data = json.loads(run_cli("status", "--json").stdout)
    assert data == {"queue_length": 0, "businesses": [
        {"business_id": "shape", "limit": 3, "active": 0, "parked": 0, "first_parked": [], "holders": []},
    ]}
