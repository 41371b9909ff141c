"""gunicorn settings for the API, read with
``GUNICORN_CMD_ARGS="--config deploy/gunicorn.conf.py" gunicorn 'api:create_app()'``.

Every value can be overridden from the environment, as docker-compose.yml and docs/deploy.md do.
"""

import os

bind = os.environ.get("RECPLAY_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# gevent: every connection is a greenlet of its worker process. A client waiting on an events stream
# (GET /api/recordings/<call_sid>/events) costs a greenlet and a queue, no thread and no database connection;
# with gthread it would hold one of the worker's few threads for as long as it waits. The pool is bounded:
# at most worker_connections open connections per process (streams and ordinary requests together); more wait
# in the listen backlog. Everything the API does blocks only on sockets (Redis, PostgreSQL through psycopg 3,
# the broker) or briefly on SQLite, which gevent's patching makes cooperative.
worker_class = "gevent"
worker_connections = int(os.environ.get("RECPLAY_WEB_CONNECTIONS", "1000"))
timeout = int(os.environ.get("RECPLAY_WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 75  # above nginx's upstream keepalive idle time
# Recycle workers now and then (memory growth), staggered so they never restart together.
max_requests = 5000
max_requests_jitter = 500
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
accesslog = "-"
# Path without the query string: stream tokens travel in ?token= and must not land in logs. With this format the
# logger class writes the line from its five fields (gunicorn_access.py; gunicorn's own builds a table of every
# header and environ variable per request, a third of the CPU of a media link answered without nginx).
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
logger_class = "gunicorn_access.AccessLog"
errorlog = "-"
