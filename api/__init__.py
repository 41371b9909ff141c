"""recplay's HTTP face: a thin Flask app over the ``tasks`` domain.

Run it with ``gunicorn 'api:create_app()'`` (production) or ``flask --app api run`` (development).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from api import events, frontend, media, metrics, ops, peaks, recordings, webhooks
from api.errors import register_error_handlers
from api.limits import init_limits
from api.recordings import MAX_BODY_BYTES
from tasks import dispatch
from tasks.logs import setup_logging
from tasks.settings import get_settings
from tasks.slots.client import readiness_checks_use_os_poll

log = logging.getLogger(__name__)

assert events.bp is recordings.bp  # api.events adds its route to the recordings blueprint when imported


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment (``tasks.settings``), then ``test_config``."""
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    settings = get_settings()
    if test_config:
        app.config.from_mapping(test_config)
        settings = test_config.get("RECPLAY_SETTINGS", settings)
    settings.signing_key()  # refuse to start without a key (unless RECPLAY_DEV=1)
    readiness_checks_use_os_poll()  # under gunicorn's gevent workers
    dispatch.prepare()
    app.extensions["recplay.settings"] = settings
    app.json.sort_keys = False  # type: ignore[attr-defined]

    if settings.trust_proxy:
        # Behind nginx (or a load balancer): the client's address and the public URL come from X-Forwarded-*
        # (Twilio signs the public URL), trusted from this many proxies only.
        n = settings.trust_proxy
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)  # type: ignore[method-assign]

    app.register_blueprint(recordings.bp)  # with the events stream (api.events), under the same request limits
    app.register_blueprint(media.bp)
    # Media links in their usual form skip Flask's request machinery (a player without nginx sends many).
    app.wsgi_app = media.FastLinks(app.wsgi_app, settings)  # type: ignore[method-assign]
    app.register_blueprint(peaks.bp)
    app.register_blueprint(ops.bp)
    metrics.init_app(app, settings)
    app.register_blueprint(frontend.bp)
    app.register_blueprint(webhooks.bp)
    init_limits(app, recordings.bp, settings)
    register_error_handlers(app)
    setup_logging()
    return app
