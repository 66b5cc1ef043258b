"""The adaptive limit of calls in flight to one destination (celery_dalga.limit), on an
injected clock: slow start, additive increase while in use, halving on failures and on slow
answers (once per round), Retry-After, and how long a destination has been unreachable."""

from __future__ import annotations

import threading

from celery_dalga.limit import BASELINE_WINDOW, Limit, Limits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def full_round(limit: Limit, clock: Clock, seconds: float = 0.05) -> None:
    """Start as many calls as the limit allows, then answer them all after `seconds`."""
    started = clock.now
    count = limit.take(limit.room)
    clock.now += seconds
    for _ in range(count):
        limit.answered(started, seconds)


def test_it_starts_at_initial_and_doubles_each_round_until_congestion():
    clock = Clock()
    limit = Limit(initial=4, cap=100, clock=clock)
    assert limit.room == 4
    sizes = []
    for _ in range(4):
        full_round(limit, clock)
        sizes.append(int(limit.limit))
    assert sizes == [8, 16, 32, 64]
    full_round(limit, clock)
    assert limit.limit == 100  # never past the cap


def test_after_a_cut_it_grows_by_about_one_a_round():
    clock = Clock()
    limit = Limit(initial=16, cap=100, clock=clock)
    limit.take(1)
    limit.failed(clock.now, sent=True)
    assert limit.limit == 8
    for _ in range(5):
        before = limit.limit
        full_round(limit, clock)
        assert 0.75 < limit.limit - before <= 1.0


def test_an_unused_limit_does_not_grow():
    clock = Clock()
    limit = Limit(initial=10, cap=100, clock=clock)
    for _ in range(50):  # one call at a time: less than half the limit in use
        limit.take(1)
        clock.now += 0.01
        limit.answered(clock.now - 0.01, 0.01)
    assert limit.limit == 10


def test_failures_and_congestion_answers_halve_it_once_per_round():
    clock = Clock()
    limit = Limit(initial=32, cap=100, clock=clock)
    started = clock.now
    assert limit.take(40) == 32
    clock.now += 1
    limit.answered(started, 0.05, congested=True)  # a 429 or 503
    assert limit.limit == 16
    for _ in range(31):  # the rest of the same round: no further cut
        limit.failed(started, sent=True)
    assert limit.limit == 16 and limit.in_flight == 0
    clock.now += 0.01
    limit.take(1)
    limit.failed(clock.now, sent=True)  # a call started after the cut
    assert limit.limit == 8
    for _ in range(10):
        limit.take(1)
        clock.now += 1
        limit.failed(clock.now, sent=False)
    assert limit.limit == 1  # never below one


def test_an_answer_much_slower_than_usual_cuts_it():
    clock = Clock()
    limit = Limit(initial=20, cap=100, clock=clock)
    full_round(limit, clock, 0.05)
    grown = limit.limit
    full_round(limit, clock, 0.12)  # 2.4x the usual, but only 70 ms more: noise
    assert limit.limit > grown
    grown = limit.limit
    limit.take(1)
    clock.now += 1
    limit.answered(clock.now - 1, 1.0)  # 20x and a second more: a queue forms
    assert limit.limit == grown / 2


def test_the_usual_delay_is_forgotten_after_two_windows():
    clock = Clock()
    limit = Limit(clock=clock)
    full_round(limit, clock, 0.01)
    clock.now += BASELINE_WINDOW + 1
    full_round(limit, clock, 0.5)
    assert limit.baseline == 0.01
    clock.now += BASELINE_WINDOW + 1
    full_round(limit, clock, 0.5)
    assert limit.baseline == 0.5


def test_retry_after_closes_the_destination_until_then():
    clock = Clock()
    limit = Limit(clock=clock)
    limit.close(30)
    assert limit.room == 0 and limit.closed_for() == 30
    clock.now += 30
    assert limit.room == 4 and limit.closed_for() == 0


def test_unreachable_for_counts_from_the_first_refusal_until_an_answer():
    clock = Clock()
    limit = Limit(clock=clock)
    assert limit.unreachable_for() == 0
    limit.take(1)
    limit.failed(clock.now, sent=False)
    clock.now += 40
    limit.take(1)
    limit.failed(clock.now, sent=False)
    assert limit.unreachable_for() == 40
    limit.take(1)
    limit.failed(clock.now, sent=True)  # sent and unanswered: still counts as down since then
    limit.take(1)
    limit.answered(clock.now, 0.01)
    assert limit.unreachable_for() == 0


def test_threads_share_a_process_limit_and_never_take_more_than_it():
    limits = Limits(initial=8, cap=100)
    assert limits("http://a:80") is limits("http://a:80")
    assert limits("http://a:80") is not limits("http://b:80")
    limit = limits("http://a:80")
    taken: list[int] = []

    def grab() -> None:
        for _ in range(1000):
            if limit.take(1):
                taken.append(1)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 8 and limit.in_flight == 8 and limit.take(1) == 0


def test_slow_start_ends_when_the_delay_rises():
    clock = Clock()
    limit = Limit(initial=4, cap=100, clock=clock)
    full_round(limit, clock, 0.010)
    assert limit.limit == 8
    full_round(limit, clock, 0.020)  # 2x the lowest and 10 ms more: a queue begins
    assert limit.threshold == 8 and 8 < limit.limit < 9.5  # from here, one a round
    full_round(limit, clock, 0.010)
    assert limit.limit < 10.5
