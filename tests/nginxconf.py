"""deploy/nginx.conf made runnable on loopback, for the tests (tests/test_nginx.py) and the benchmarks: the same file
with only its addresses, paths and the media link secret replaced."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def render_conf(workdir: Path, api_port: int, port: int, media_dir: Path, link_secret: str,
                access_log: bool = True) -> Path:
    """deploy/nginx.conf, pointed at this test's API, port, media directory and media link secret (written as
    docker-compose.yml has the nginx image render deploy/recplay-media-secret.conf.template)."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    template = (ROOT / "deploy" / "recplay-media-secret.conf.template").read_text()
    assert template.count("${RECPLAY_MEDIA_LINK_SECRET}") == 1
    secret_conf = workdir / "recplay-media-secret.conf"
    secret_conf.write_text(template.replace("${RECPLAY_MEDIA_LINK_SECRET}", link_secret))
    replacements = {
        "server api:8000;": f"server 127.0.0.1:{api_port};",
        "listen 80;": f"listen 127.0.0.1:{port};",
        "alias /var/lib/recplay/media/;": f"alias {media_dir}/;",
        "root /var/lib/recplay;": f"root {media_dir.parent};",
        "include recplay-media-secret.conf;": f"include {secret_conf};",
        "access_log /dev/stdout recplay_no_query;":
            f"access_log {workdir}/access.log recplay_no_query;" if access_log else "access_log off;",
        "worker_processes auto;": "worker_processes 1;",
    }
    for old, new in replacements.items():
        assert conf.count(old) == 1, f"deploy/nginx.conf no longer has {old!r}"
        conf = conf.replace(old, new)
    temp = "".join(f"    {name}_temp_path {workdir}/{name};\n"
                   for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = conf.replace("http {\n", "http {\n" + temp, 1)
    conf = f"pid {workdir}/nginx.pid;\n" + conf  # not the system's /run/nginx.pid
    if os.geteuid() == 0:
        conf = "user root;\n" + conf  # worker processes must read the test's private temp directories
    path = workdir / "nginx.conf"
    path.write_text(conf)
    return path
