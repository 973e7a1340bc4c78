"""Dynamic batching: concurrent requests share one pipeline call, run on one worker thread.

A request waits for company only while another one is on its way (announced with `arriving()` by the
caller while it decodes), and never longer than `max_wait_s`: a lone request pays no batching delay. Under
load, requests also pile up while the previous batch runs and go together in the next. The queue is
bounded: when it is full, `submit` refuses at once (503) instead of letting latency grow without limit
(Little's law: in-flight = rate x latency).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
_STOP = object()


class Overloaded(RuntimeError):
    pass


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[list[Item]], list[Result]],
        max_size: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._on_batch = on_batch
        self._arriving = 0
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._loop, name="susik-batcher", daemon=True)
        self._worker.start()

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a request that will submit soon, so a forming batch waits for it."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1

    def submit(self, item: Item) -> Future[Result]:
        future: Future[Result] = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise Overloaded(f"{self._queue.maxsize} images already waiting") from None
        return future

    def full(self) -> bool:
        return self._queue.full()

    def depth(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._worker.join(timeout=30)

    def _gather(self, first: tuple) -> tuple[list[tuple], bool]:
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_size:
            remaining = deadline - time.monotonic()
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                if remaining <= 0 or not self._arriving:
                    break
                try:  # short slices: stop waiting as soon as nobody is on the way any more
                    entry = self._queue.get(timeout=min(remaining, 0.001))
                except queue.Empty:
                    continue
            if entry is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            # A request that timed out while waiting was cancelled: it costs no inference.
            live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if not live:
                continue
            if self._on_batch is not None:
                self._on_batch(len(live))
            try:
                results = self._run([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch of {len(live)} gave {len(results)} results")
            except Exception as error:  # the batch's callers get the error; the worker lives on
                for _, future in live:
                    future.set_exception(error)
                continue
            for (_, future), result in zip(live, results, strict=True):
                future.set_result(result)
