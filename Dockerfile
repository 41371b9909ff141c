# One image for every recplay process: the API (gunicorn), the worker, beat, Flower and `alembic upgrade head`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECPLAY_DATA_DIR=/var/lib/recplay

RUN useradd --create-home --uid 10001 recplay \
    && mkdir -p /var/lib/recplay/media \
    && chown -R recplay:recplay /var/lib/recplay

WORKDIR /app
COPY . /app
# Editable, as the README installs it: alembic/ and alembic.ini stay beside the packages that use them.
RUN pip install -e . && chown recplay:recplay /app

USER recplay
EXPOSE 8000
CMD ["gunicorn", "api:create_app()"]
