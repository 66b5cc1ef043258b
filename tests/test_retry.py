"""The retry policy's arithmetic (celery_dalga.retry): the backoff, its cap and jitter, the
wait a destination asks for, and when retrying ends."""

from datetime import UTC, datetime, timedelta

from celery_dalga.retry import RetryPolicy

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_the_delay_starts_at_the_interval_multiplies_and_is_capped():
    policy = RetryPolicy(interval=1, multiplier=2, max_interval=600)
    assert [policy.delay(n) for n in range(5)] == [1, 2, 4, 8, 16]
    assert policy.delay(20) == 600
    assert policy.delay(10_000) == 600
    other = RetryPolicy(interval=2, multiplier=3, max_interval=100)
    assert [other.delay(n) for n in range(4)] == [2, 6, 18, 54]


def test_the_backoff_follows_the_policy_and_jitter_stays_under_it():
    policy = RetryPolicy(interval=3, multiplier=3, max_interval=50)
    assert [policy.delay(n) for n in range(5)] == [3, 9, 27, 50, 50]
    jittered = RetryPolicy(jitter=True)
    assert all(0 <= jittered.delay(3) <= 8 for _ in range(50))


def test_a_wait_the_destination_asks_for_counts_up_to_the_cap():
    policy = RetryPolicy(interval=1, multiplier=2, max_interval=600)
    assert policy.delay(1, asked=30) == 30
    assert policy.delay(1, asked=0.5) == 2  # shorter than the backoff: the backoff holds
    assert policy.delay(1, asked=10**9) == 600
    assert RetryPolicy(jitter=True).delay(3, asked=30) == 30


def test_retrying_ends_after_stop_after_or_the_retries():
    assert not RetryPolicy().expired(NOW, NOW + timedelta(days=365))  # 0: never
    stopping = RetryPolicy(stop_after=60)
    assert not stopping.expired(NOW, NOW + timedelta(seconds=60))
    assert stopping.expired(NOW, NOW + timedelta(seconds=61))
    assert not RetryPolicy().exhausted(10**6)  # None: no limit
    assert [RetryPolicy(retries=2).exhausted(n) for n in range(4)] == [False, False, True, True]
