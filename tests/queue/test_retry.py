from mailhouse.queue import retry


def test_backoff_doubles_and_caps() -> None:
    got = [retry.backoff(n, 300, 4000, jitter=0) for n in range(1, 8)]
    assert got == [300, 600, 1200, 2400, 4000, 4000, 4000]


def test_jitter_bounds() -> None:
    for _ in range(200):
        assert 270 <= retry.backoff(1, 300, 4000) <= 330


def test_next_attempt_never_beyond_lifetime() -> None:
    assert retry.next_attempt(1000, 0, 10, 300, 4000, 1500, jitter=0) == 1500
    assert retry.next_attempt(1000, 0, 1, 300, 4000, 10**6, jitter=0) == 1300


def test_expired() -> None:
    assert retry.expired(100, 0, 100) and not retry.expired(99.9, 0, 100)


def test_huge_attempt_count_does_not_overflow() -> None:
    assert retry.backoff(10**6, 1, 60, jitter=0) == 60
