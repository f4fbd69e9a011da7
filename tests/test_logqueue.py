"""The CLI's queued log handler in process, with streams that stall or break."""

from __future__ import annotations

import io
import logging
import threading

from trisup._logqueue import QueuedLogfmtHandler, dropped_line


class _GatedStream(io.StringIO):
    """A stream without a descriptor whose writes wait until *gate* opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no descriptor")

    def write(self, text: str) -> int:
        self.entered.set()
        assert self.gate.wait(10)
        return super().write(text)


class _BrokenStream(io.StringIO):
    def fileno(self) -> int:
        raise io.UnsupportedOperation("no descriptor")

    def write(self, text: str) -> int:
        raise ValueError("I/O operation on closed file")


def _record(message: str) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "trisup", "levelno": logging.INFO, "levelname": "INFO", "msg": message}
    )


def test_lines_reach_a_stream_without_a_descriptor_in_order() -> None:
    stream = io.StringIO()
    handler = QueuedLogfmtHandler(stream)
    for i in range(5):
        handler.emit(_record(f"line {i}"))
    handler.close()
    lines = stream.getvalue().splitlines()
    assert [line.split("msg=")[1] for line in lines] == [f'"line {i}"' for i in range(5)]
    assert handler.dropped == 0
    handler.close()  # a second close (logging.shutdown's) does nothing
    assert len(stream.getvalue().splitlines()) == 5


def test_a_stalled_stream_drops_and_counts_then_reports() -> None:
    stream = _GatedStream()
    handler = QueuedLogfmtHandler(stream, capacity=2)
    handler.emit(_record("first"))  # the writer takes it and stalls in write()
    assert stream.entered.wait(10)
    for i in range(5):  # two fit in the queue, three are dropped
        handler.emit(_record(f"next {i}"))
    assert handler.dropped == 3
    stream.gate.set()
    handler.close()
    text = stream.getvalue()
    assert [line.split("msg=")[1] for line in text.splitlines()[:3]] == [
        "first",
        '"next 0"',
        '"next 1"',
    ]
    tails = [line.split(" ", 1)[1] for line in text.splitlines()[3:]]  # no timestamps
    expected = [dropped_line(3), dropped_line(3, total=True)]
    assert tails == [line.rstrip("\n").split(" ", 1)[1] for line in expected]


def test_a_broken_stream_stops_the_writer_and_counts_what_was_lost() -> None:
    handler = QueuedLogfmtHandler(_BrokenStream())
    handler.emit(_record("lost"))
    handler.close()
    assert handler.dropped == 1
