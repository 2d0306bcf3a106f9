"""The pacer learns a connection's budget from the headers of its responses (no sandbox:
the header sequences of servers that send less than the sandbox does)."""

import pytest

from sources.makini.errors import ConfigurationError
from sources.makini.pacing import Pacer, RateBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_429_closes_the_connection_until_retry_after_for_every_walk():
    clock = Clock()
    pacer = Pacer(clock=clock)
    assert pacer._admit() == 0 and pacer._admit() == 0  # two walks send
    pacer.after_response(429, {"Retry-After": "7", "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"})
    assert pacer._admit() == pytest.approx(7)  # a third walk waits, without a 429 of its own
    pacer.after_response(0, {})  # the second walk's request, which never got an answer
    clock.now += 7
    assert pacer._admit() == 0  # one request asks whether the window reset
    assert pacer._admit() > 0  # ... and the others wait for its answer
    pacer.after_response(200, {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9"})  # the probe's
    assert all(pacer._admit() == 0 for _ in range(9))
    assert pacer._admit() > 0  # the window's nine are in flight


def test_remaining_counts_requests_in_flight():
    pacer = Pacer(clock=Clock())
    assert pacer._admit() == 0
    pacer.after_response(200, {"X-RateLimit-Remaining": "3"})
    assert [pacer._admit() for _ in range(3)] == [0, 0, 0]
    assert pacer._admit() > 0


def test_a_server_without_rate_headers_is_not_paced():
    pacer = Pacer(clock=Clock())
    for _ in range(50):
        assert pacer._admit() == 0
        pacer.after_response(200, {})


def test_an_exhausted_window_with_a_reset_header_waits_for_it():
    clock = Clock()
    pacer = Pacer(clock=clock)
    assert pacer._admit() == 0
    pacer.after_response(200, {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3"})
    assert pacer._admit() == pytest.approx(3)


def test_the_window_length_is_learned_from_resets_a_whole_number_of_windows_apart():
    clock = Clock()
    pacer = Pacer(clock=clock)
    for at in (0.0, 5.0, 15.0):  # the second gap spans two windows
        clock.now = 1000.0 + at
        pacer._admit()
        pacer.after_response(429, {"Retry-After": "2", "X-RateLimit-Limit": "10"})
    assert pacer.budget == RateBudget(10, 5)


@pytest.mark.parametrize("text, budget", [("600/min", RateBudget(600, 60)), ("10/5s", RateBudget(10, 5)),
                                          ("100 per 60 seconds", RateBudget(100, 60))])
def test_rate_budgets_are_written_as_requests_per_window(text, budget):
    assert RateBudget.parse(text, "connection x") == budget


@pytest.mark.parametrize("text", ["fast", "0/min", "10/0s", "10/fortnight"])
def test_a_budget_that_is_not_understood_says_what_to_write(text):
    with pytest.raises(ConfigurationError, match=r'connection x: .*"600/min"'):
        RateBudget.parse(text, "connection x")


def test_once_the_window_is_learned_a_spent_window_waits_for_the_predicted_reset_unasked():
    clock = Clock()
    pacer = Pacer(clock=clock)
    for at in (0.0, 5.0):  # two spent windows, each found out by one 429
        clock.now = 1000.0 + at
        assert pacer._admit() == 0
        pacer.after_response(429, {"Retry-After": "2", "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"})
    assert pacer.budget == RateBudget(10, 5)
    clock.now = 1012.5  # a third window (it began at 1012) is spent by a request that got its answer
    assert pacer._admit() == 0
    pacer.after_response(200, {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"})
    assert pacer._admit() == pytest.approx(4.5)  # until 1017, with no 429 to find out
    assert pacer.refused == 2


def test_a_wait_is_never_longer_than_the_cap_and_a_reset_moment_is_read_as_one():
    import time

    from sources.makini.pacing import MAX_WAIT_SECONDS

    clock = Clock()
    pacer = Pacer(clock=clock)
    assert pacer._admit() == 0
    pacer.after_response(429, {"Retry-After": "3600"})
    assert pacer._admit() == pytest.approx(MAX_WAIT_SECONDS)  # the retry budget decides when to give up
    other = Pacer(clock=clock)
    assert other._admit() == 0
    reset_at = time.time() + 30  # X-RateLimit-Reset as a Unix time, as many servers send it
    other.after_response(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(reset_at))})
    assert 25 < other._admit() <= 31
