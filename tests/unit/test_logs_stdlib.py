"""The standard library's log records (aiormq, botocore, aiohttp, asyncio) come out as the worker's JSON lines."""

from __future__ import annotations

import io
import logging

import orjson

from dispatcher.logs import stdlib_formatter


def _emit(logger_name: str, level: int, message: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(stdlib_formatter(as_json=True))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if exc is None:
            logger.log(level, message, *args)
        else:
            try:
                raise exc
            except type(exc):
                logger.exception(message, *args)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_a_library_record_is_one_json_line_with_level_logger_and_event():
    """aiormq's warning becomes one JSON object with level, logger name, event and timestamp, its URL masked."""
    output = _emit("aiormq.connection", logging.WARNING, "Connection to %s lost", "amqp://guest:s3cret@broker:5672/")
    [line] = output.splitlines()
    record = orjson.loads(line)
    assert record["level"] == "warning"
    assert record["logger"] == "aiormq.connection"
    assert record["event"] == "Connection to amqp://guest:***@broker:5672/ lost"
    assert record["timestamp"].endswith("Z")
    assert "s3cret" not in output


def test_a_library_traceback_stays_inside_its_json_line():
    """An exception logged by a library is one line whose `exception` field holds the traceback."""
    output = _emit("asyncio", logging.ERROR, "Task exception was never retrieved", exc=RuntimeError("boom"))
    [line] = output.splitlines()
    record = orjson.loads(line)
    assert (record["level"], record["logger"]) == ("error", "asyncio")
    assert "RuntimeError: boom" in record["exception"]
