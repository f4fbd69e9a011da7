"""HTTP clients for the console benchmark, in a process of their own.

``python bench/http_clients.py URL THREADS [gzip]``: every thread loops on
``GET URL`` over a keep-alive connection (`http.client`), reading each body
whole; with ``gzip``, it sends ``Accept-Encoding: gzip`` as browsers, httpx and
Prometheus do (the bodies are read, not decompressed). The
process prints ``ready`` once every thread has had an answer; then each line
read from stdin is a mark: the process prints the responses completed since
the previous mark and the seconds between the two, ``count seconds``. It ends
at the end of its input.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from urllib.parse import urlsplit

__all__ = ["main"]


def main(url: str, threads: int, *, accept_gzip: bool) -> None:
    """Run *threads* clients on *url* until stdin closes (see the module)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    counts = [0] * threads
    started = threading.Barrier(threads + 1)
    stop = threading.Event()
    headers = {"Accept-Encoding": "gzip"} if accept_gzip else {}

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

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
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
    main(sys.argv[1], int(sys.argv[2]), accept_gzip=sys.argv[3:] == ["gzip"])
