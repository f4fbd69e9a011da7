"""HTTP clients for the console benchmark, in a process of their own.

``python bench/http_clients.py URL THREADS [gzip|stream]``: every thread loops on
``GET URL`` over a keep-alive connection (`http.client`), reading each body
whole; with ``gzip``, it sends ``Accept-Encoding: gzip`` as browsers, httpx and
Prometheus do (the bodies are read, not decompressed). With ``stream``, URL is
an event stream (``GET P/api/events``): every thread opens it once and reads it
line by line as fast as it comes, counting its ``snapshot`` messages. The
process prints ``ready`` once every thread has had an answer (a stream: its
first snapshot); then each line read from stdin is a mark: the process prints
the responses completed (the snapshots received) since the previous mark and
the seconds between the two, ``count seconds``. It ends at the end of its input.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from urllib.parse import urlsplit

__all__ = ["main"]


def main(url: str, threads: int, *, accept_gzip: bool, stream: bool = False) -> None:
    """Run *threads* clients on *url* until stdin closes (see the module)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    counts = [0] * threads
    started = threading.Barrier(threads + 1)
    stop = threading.Event()
    headers = {"Accept-Encoding": "gzip"} if accept_gzip else {}

    def reader(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("GET", path)
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"GET {url}: {response.status}")
        first = True
        while not stop.is_set():
            line = response.readline()
            if not line:
                raise SystemExit(f"GET {url}: the stream ended")
            if line == b"event: snapshot\n":
                counts[i] += 1
                if first:
                    first = False
                    started.wait()
        conn.close()

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        first = True
        while not stop.is_set():
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or not body:
                raise SystemExit(f"GET {url}: {response.status}")
            counts[i] += 1
            if first:
                first = False
                started.wait()
        conn.close()

    workers = [
        threading.Thread(target=reader if stream else client, args=(i,), daemon=True)
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    started.wait()
    print("ready", flush=True)
    last_count, last_time = sum(counts), time.perf_counter()
    for _ in sys.stdin:
        count, now = sum(counts), time.perf_counter()
        print(f"{count - last_count} {now - last_time:.6f}", flush=True)
        last_count, last_time = count, now
    stop.set()


if __name__ == "__main__":
    mode = sys.argv[3:]
    main(sys.argv[1], int(sys.argv[2]), accept_gzip=mode == ["gzip"], stream=mode == ["stream"])
