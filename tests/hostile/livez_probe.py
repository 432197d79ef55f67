"""Polls a worker's `/livez` at a fixed interval and writes each response time as a JSON line.

It runs as a process of its own (`python -m tests.hostile.livez_probe HOST PORT INTERVAL_S`), as a
kubelet would, so the test process's load (publishing, reading, the emulator) never delays it. `at`
is `time.monotonic()`, which is system-wide on Linux, so the test can place each sample in its run.
"""

from __future__ import annotations

import http.client
import json
import sys
import time

TIMEOUT_S = 2.0


def probe(host: str, port: int) -> tuple[float, int | str]:
    """(milliseconds, HTTP status or the error's name) of one GET /livez on a fresh connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    status: int | str
    try:
        connection.request("GET", "/livez")
        response = connection.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        status = type(exc).__name__
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000, status


def main(argv: list[str]) -> None:
    """Probe until killed."""
    host, port, interval_s = argv[1], int(argv[2]), float(argv[3])
    while True:
        at = time.monotonic()
        elapsed_ms, status = probe(host, port)
        sys.stdout.write(json.dumps({"at": at, "ms": round(elapsed_ms, 2), "status": status}) + "\n")
        sys.stdout.flush()
        time.sleep(max(0.0, at + interval_s - time.monotonic()))


if __name__ == "__main__":
    main(sys.argv)
