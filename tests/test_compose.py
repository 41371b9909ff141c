"""docker-compose.yml, the Dockerfile and .env.example agree with each other and with the code.

No Docker engine runs here: the compose file is parsed (PyYAML, with its merge keys and Compose's variable
interpolation from .env.example) and checked for the services, commands, healthchecks, volumes and wiring a
deployment relies on; the API's command runs for real with the compose gunicorn settings.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import ROOT, SECRET, free_port, wait_for

APP_SERVICES = ("migrate", "api", "worker", "beat", "flower")
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} over a parsed document ($$ is a literal $)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, kind, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if kind and "?" in kind:
            assert current, f"${{{name}}} is required ({arg}) but .env.example leaves it empty"
            return current
        if kind and "-" in kind:
            return current or arg
        return current

    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw, env_example())  # type: ignore[no-any-return]


def test_every_service_is_there_with_a_healthcheck(compose):
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "migrate", "api", "worker", "beat", "flower", "nginx"}
    for name, service in services.items():
        check = service.get("healthcheck", {}).get("test")
        assert check and check[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_the_processes_are_started_exactly_as_the_spec_says(compose):
    commands = {name: compose["services"][name]["command"] for name in APP_SERVICES}
    assert commands == {
        "migrate": ["alembic", "upgrade", "head"],
        "api": ["gunicorn", "api:create_app()"],
        "worker": ["celery", "-A", "tasks", "worker"],
        "beat": ["celery", "-A", "tasks", "beat"],
        "flower": ["celery", "-A", "tasks", "flower"],
    }
    bin_dir = Path(sys.executable).parent
    for executable in {c[0] for c in commands.values()}:
        assert (bin_dir / executable).exists(), f"{executable} is not installed by `pip install -e .`"


def test_redis_keeps_its_data_and_every_volume_is_declared(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"]
    used = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])
            if not v.startswith(".")}
    assert used == set(compose["volumes"]) == {"redis-data", "postgres-data", "recplay-data"}


def test_app_services_share_the_settings_and_wait_for_their_dependencies(compose):
    services = compose["services"]
    for name in ("api", "worker", "beat", "flower"):
        service = services[name]
        assert service["build"] == "." and (ROOT / "Dockerfile").exists()
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"},
                                         "postgres": {"condition": "service_healthy"},
                                         "migrate": {"condition": "service_completed_successfully"}}
        env = service["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        url = make_url(env["DATABASE_URL"])
        assert (url.drivername, url.host, url.database) == ("postgresql+psycopg", "postgres", "recplay")
        assert url.password == env_example()["POSTGRES_PASSWORD"]
        assert env["RECPLAY_SECRET_KEY"] == env_example()["RECPLAY_SECRET_KEY"]
        assert "recplay-data:/var/lib/recplay" in service["volumes"]
        assert env["RECPLAY_DATA_DIR"] == "/var/lib/recplay"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == env_example()["FLOWER_BASIC_AUTH"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert services["worker"]["environment"]["RECPLAY_WORKER_POOL"] == "threads"


def test_nginx_serves_the_media_volume_at_the_location_the_api_redirects_to(compose):
    nginx, api = compose["services"]["nginx"], compose["services"]["api"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert "recplay-data:/var/lib/recplay:ro" in nginx["volumes"]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    prefix = api["environment"]["RECPLAY_ACCEL_REDIRECT"]
    location = re.search(r"location (\S+) \{\s*internal;\s*alias (\S+);", conf)
    assert location is not None
    assert location.group(1) == prefix
    assert location.group(2) == api["environment"]["RECPLAY_DATA_DIR"] + "/media/"
    assert "server api:8000;" in conf
    assert api["expose"] == ["8000"]
    assert api["environment"]["RECPLAY_TRUST_PROXY"] == "1"
    assert nginx["depends_on"] == {"api": {"condition": "service_healthy"}}


def test_nginx_checks_media_links_with_the_secret_the_api_signs_them_with(compose, monkeypatch):
    nginx, api = compose["services"]["nginx"], compose["services"]["api"]
    secret = api["environment"]["RECPLAY_MEDIA_LINK_SECRET"]
    assert nginx["environment"]["RECPLAY_MEDIA_LINK_SECRET"] == secret == env_example()["RECPLAY_MEDIA_LINK_SECRET"]
    monkeypatch.setenv("RECPLAY_MEDIA_LINK_SECRET", secret)
    from tasks.settings import load_settings

    assert load_settings().media_link_secret_value() == secret  # the example's value is one the API accepts
    # The nginx image renders templates/X.template into NGINX_ENVSUBST_OUTPUT_DIR/X, which nginx.conf includes.
    template = "./deploy/recplay-media-secret.conf.template"
    assert f"{template}:/etc/nginx/templates/recplay-media-secret.conf.template:ro" in nginx["volumes"]
    assert nginx["environment"]["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert "include recplay-media-secret.conf;" in (ROOT / "deploy" / "nginx.conf").read_text()
    assert "${RECPLAY_MEDIA_LINK_SECRET}" in (ROOT / template).read_text()
    # Media links are served from <data dir>/media below nginx's root.
    assert "root /var/lib/recplay;" in (ROOT / "deploy" / "nginx.conf").read_text()
    assert api["environment"]["RECPLAY_DATA_DIR"] == "/var/lib/recplay"


def test_every_required_variable_is_in_the_example_env_file(raw):
    text = (ROOT / "docker-compose.yml").read_text()
    required = {m.group(1) for m in _VARIABLE.finditer(text) if m.group(2) and "?" in m.group(2)}
    assert required == {"POSTGRES_PASSWORD", "RECPLAY_SECRET_KEY", "RECPLAY_MEDIA_LINK_SECRET", "FLOWER_BASIC_AUTH"}
    mentioned = {m.group(1) for m in _VARIABLE.finditer(text)}
    assert mentioned <= set(env_example()), mentioned - set(env_example())
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_the_api_command_serves_with_the_compose_gunicorn_settings(compose, data_dir, tmp_path):
    api = compose["services"]["api"]
    port = free_port()
    env = {**os.environ, "GUNICORN_CMD_ARGS": api["environment"]["GUNICORN_CMD_ARGS"],
           "RECPLAY_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "RECPLAY_SECRET_KEY": SECRET,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(api["command"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                return False  # not listening yet, or the worker is still booting behind the listening master

        wait_for(healthy, 30, "gunicorn to serve /healthz", interval=0.2)
        secret = "token=do-not-log-me"
        requests.get(f"http://127.0.0.1:{port}/api/recordings/CA1/stream?{secret}", timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert "Using worker: gevent" in text
    assert '"GET /api/recordings/CA1/stream" 401' in text
    assert secret not in text
    assert shlex.split(api["environment"]["GUNICORN_CMD_ARGS"]) == ["--config", "deploy/gunicorn.conf.py"]
