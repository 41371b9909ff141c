"""gunicorn settings for the API, read with
``GUNICORN_CMD_ARGS="--config deploy/gunicorn.conf.py" gunicorn 'api:create_app()'``.

Every value can be overridden from the environment, as docker-compose.yml and docs/deploy.md do.
"""

import os

bind = os.environ.get("RECPLAY_BIND", "0.0.0.0:8000")
# Processes x threads: requests wait on Redis and the database, and stream files when nginx does not.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "gthread"
threads = int(os.environ.get("RECPLAY_WEB_THREADS", "8"))
timeout = int(os.environ.get("RECPLAY_WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 75  # above nginx's upstream keepalive idle time
# Recycle workers now and then (memory growth), staggered so they never restart together.
max_requests = 5000
max_requests_jitter = 500
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
accesslog = "-"
# Path without the query string: stream tokens travel in ?token= and must not land in logs.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
