"""The waits between polls: growing, jittered in steps, never far past a follow's deadline."""

from __future__ import annotations

import random
from collections import Counter

from dispatcher.poll_schedule import BUCKETS, PollSchedule

SCHEDULE = PollSchedule((5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0), jitter=0.2)


def test_each_step_offers_its_delay_and_up_to_jitter_more():
    """Step 0 waits 5 to 6 s in four steps; the last delay repeats for every later step."""
    assert SCHEDULE.choices(0) == (5.0, 5.3, 5.7, 6.0)
    assert SCHEDULE.choices(6) == SCHEDULE.choices(60) == (300.0, 320.0, 340.0, 360.0)
    assert len(SCHEDULE.waits_s) == 7 * BUCKETS
    assert list(SCHEDULE.waits_s) == sorted(SCHEDULE.waits_s)


def test_without_jitter_one_wait_per_delay():
    """Jitter 0: the schedule's delays, one queue each."""
    schedule = PollSchedule((1.0, 2.0), jitter=0.0)
    assert schedule.waits_s == (1.0, 2.0)
    assert schedule.wait_for(5, remaining_s=100) == 2.0


def test_jobs_started_together_spread_over_every_bucket():
    """10,000 first polls land in every bucket of step 0, none in more than a third of them."""
    rng = random.Random(7)
    waits = Counter(SCHEDULE.wait_for(0, remaining_s=3600, rng=rng) for _ in range(10_000))
    assert set(waits) == set(SCHEDULE.choices(0))
    assert max(waits.values()) < 10_000 / 3


def test_a_wait_never_passes_the_deadline_by_more_than_the_shortest_wait():
    """Near the deadline the longest wait that still fits is taken; past it, the shortest."""
    assert SCHEDULE.wait_for(6, remaining_s=100) == 96.0
    assert SCHEDULE.wait_for(3, remaining_s=12.5) == 12.0
    assert SCHEDULE.wait_for(3, remaining_s=2) == 5.0
    assert SCHEDULE.wait_for(0, remaining_s=-30) == 5.0
