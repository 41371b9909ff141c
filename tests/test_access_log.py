"""The access logger of deploy/gunicorn.conf.py writes, with the shipped format, exactly the line gunicorn's own
Logger writes; with any other format it is gunicorn's Logger."""

from __future__ import annotations

import logging
import runpy
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn import glogging
from gunicorn.config import Config

from gunicorn_access import ACCESS_FORMAT, AccessLog

ROOT = Path(__file__).resolve().parent.parent


def _line(logger_class: type[glogging.Logger], fmt: str, resp: Any, environ: dict[str, Any],
          took: timedelta, caplog: pytest.LogCaptureFixture) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", fmt)
    logger = logger_class(cfg)
    logger.access_log.propagate = True  # into caplog
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gunicorn.access"):
        logger.access(resp, SimpleNamespace(headers=[("Host", "x")]), environ, took)
    [record] = [r for r in caplog.records if r.name == "gunicorn.access"]
    return record.getMessage()


@pytest.mark.parametrize(("status", "sent", "environ", "took"), [
    ("206 Partial Content", 65536, {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET",
                                    "PATH_INFO": "/media/biz/CA1-1.wav"}, timedelta(microseconds=2999)),
    (401, None, {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "HEAD", "PATH_INFO": "/api/recordings/CA1"},
     timedelta(seconds=3, microseconds=1500)),
    ("200 OK", 0, {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz"}, timedelta(0)),
])
def test_the_shipped_format_gives_gunicorns_own_line(status, sent, environ, took, caplog):
    environ = {"RAW_URI": environ.get("PATH_INFO", ""), "SERVER_PROTOCOL": "HTTP/1.1", "QUERY_STRING": "token=t",
               **environ}
    resp = SimpleNamespace(status=status, sent=sent, headers=[("Content-Type", "audio/wav")])
    ours = _line(AccessLog, ACCESS_FORMAT, resp, environ, took, caplog)
    assert ours == _line(glogging.Logger, ACCESS_FORMAT, resp, environ, took, caplog)
    assert "token" not in ours
    other = '%(h)s %(r)s %(s)s'  # another format: gunicorn's own logger writes it
    assert _line(AccessLog, other, resp, environ, took, caplog) == _line(glogging.Logger, other, resp, environ,
                                                                         took, caplog)


def test_a_path_can_neither_forge_a_line_nor_leave_its_quotes(caplog):
    # A %0A in a request's path is a newline in PATH_INFO: written as it is, it would start a line of the client's.
    forged = '/x\n10.0.0.1 "GET /admin" 200 0 1ms\\\x85'
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET\r", "PATH_INFO": forged}
    resp = SimpleNamespace(status="404 Not Found", sent=60, headers=[])
    line = _line(AccessLog, ACCESS_FORMAT, resp, environ, timedelta(milliseconds=3), caplog)
    assert line == ('10.0.0.7 "GET\\x0d /x\\x0a10.0.0.1 \\x22GET /admin\\x22 200 0 1ms\\x5c\\x85" 404 60 3ms')
    assert "\n" not in line and "\r" not in line and line.count('"') == 2
    plain = {**environ, "REQUEST_METHOD": "GET", "PATH_INFO": "/media/biz/CA1-1.wav é"}  # printable: as it is
    assert _line(AccessLog, ACCESS_FORMAT, resp, plain, timedelta(milliseconds=3), caplog) == (
        '10.0.0.7 "GET /media/biz/CA1-1.wav é" 404 60 3ms')


def test_the_deploy_config_uses_it_with_the_shipped_format():
    conf = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    assert (conf["logger_class"], conf["access_log_format"]) == ("gunicorn_access.AccessLog", ACCESS_FORMAT)


def test_with_gunicorns_own_handler_the_line_goes_straight_to_its_file_the_same_as_gunicorns(tmp_path):
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "PATH_INFO": "/media/biz/CA1-1.wav",
               "RAW_URI": "/media/biz/CA1-1.wav", "SERVER_PROTOCOL": "HTTP/1.1", "QUERY_STRING": "sig=s"}
    resp = SimpleNamespace(status="206 Partial Content", sent=65536, headers=[])
    written = {}
    for name, logger_class in (("ours", AccessLog), ("gunicorn", glogging.Logger)):
        cfg = Config()
        cfg.set("accesslog", str(tmp_path / f"{name}.log"))
        cfg.set("access_log_format", ACCESS_FORMAT)
        logger = logger_class(cfg)
        if logger_class is AccessLog:
            assert logger._plain_handler() is not None  # the direct path is the one measured here
        for took in (timedelta(microseconds=2999), timedelta(seconds=1)):
            logger.access(resp, SimpleNamespace(headers=[]), environ, took)
        logger.access_log.handlers[0].close()
        written[name] = (tmp_path / f"{name}.log").read_text()
    assert written["ours"] == written["gunicorn"] == (
        '10.0.0.7 "GET /media/biz/CA1-1.wav" 206 65536 2ms\n10.0.0.7 "GET /media/biz/CA1-1.wav" 206 65536 1000ms\n')


def test_a_logging_setup_of_its_own_gets_the_line_through_logging():
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", ACCESS_FORMAT)
    logger = AccessLog(cfg)
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    extra = Collect()  # as a logging config or a syslog handler would add
    logger.access_log.addHandler(extra)
    try:
        assert logger._plain_handler() is None
        logger.access(SimpleNamespace(status=200, sent=2, headers=[]), SimpleNamespace(headers=[]),
                      {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/healthz"}, timedelta(0))
        assert seen == ['127.0.0.1 "GET /healthz" 200 2 0ms']
    finally:
        logger.access_log.removeHandler(extra)
