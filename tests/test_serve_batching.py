"""The dynamic batcher: who waits for whom, bounded queue, cancellation, errors."""

import threading
import time

import pytest

from susik.serve.batching import Batcher, Overloaded


class Recorder:
    def __init__(self, delay_s=0.0, fail_on=None):
        self.calls = []
        self.delay_s = delay_s
        self.fail_on = fail_on

    def __call__(self, items):
        self.calls.append(list(items))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [item * 10 for item in items]


@pytest.fixture
def make():
    made = []

    def build(run, **options):
        defaults = {"max_size": 8, "max_wait_s": 0.5, "max_queue": 16}
        batcher = Batcher(run, **{**defaults, **options})
        made.append(batcher)
        return batcher

    yield build
    for batcher in made:
        batcher.close()


def test_a_lone_request_does_not_wait_for_company(make):
    batcher = make(Recorder(), max_wait_s=0.5)
    start = time.perf_counter()
    assert batcher.submit(3).result(timeout=2) == 30
    assert time.perf_counter() - start < 0.1  # far below max_wait_s


def test_a_batch_waits_for_announced_arrivals_up_to_the_bound(make):
    run = Recorder()
    batcher = make(run, max_wait_s=0.3)
    announced = threading.Event()

    def late_arrival():
        with batcher.arriving():
            announced.set()
            time.sleep(0.05)  # decoding
            batcher.submit(2)

    thread = threading.Thread(target=late_arrival)
    thread.start()
    announced.wait()
    assert batcher.submit(1).result(timeout=2) == 10
    thread.join()
    assert run.calls == [[1, 2]]

    with batcher.arriving():  # someone announced but never comes: the wait ends at max_wait_s
        start = time.perf_counter()
        batcher.submit(5).result(timeout=2)
        assert 0.25 < time.perf_counter() - start < 1.0


def test_requests_queued_during_a_batch_go_together_in_the_next(make):
    run = Recorder(delay_s=0.1)
    batcher = make(run, max_wait_s=0)
    first = batcher.submit(0)
    while not run.calls:
        time.sleep(0.002)
    rest = [batcher.submit(i) for i in range(1, 6)]
    assert [f.result(timeout=2) for f in [first, *rest]] == [0, 10, 20, 30, 40, 50]
    assert run.calls == [[0], [1, 2, 3, 4, 5]]


def test_bounded_queue_cancellation_and_errors(make):
    run = Recorder(delay_s=0.1, fail_on=7)
    batcher = make(run, max_wait_s=0, max_queue=2, max_size=1)
    busy = batcher.submit(1)
    while not run.calls:
        time.sleep(0.002)
    waiting, cancelled = batcher.submit(2), batcher.submit(3)
    with pytest.raises(Overloaded):
        batcher.submit(4)
    assert cancelled.cancel()  # a caller that timed out while queued costs no inference
    assert (busy.result(timeout=2), waiting.result(timeout=2)) == (10, 20)
    with pytest.raises(ValueError, match="bad item 7"):
        batcher.submit(7).result(timeout=2)
    assert batcher.submit(8).result(timeout=2) == 80  # the worker outlives a failing batch
    assert [call for call in run.calls if 3 in call] == []
