"""The sizing formula: replicas, prefetch and pod resources from the rate limits and message size."""

from __future__ import annotations

import gc
import math
import string
import tracemalloc

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher import capacity
from dispatcher.envelope import Decoder
from dispatcher.registry import default_registry
from dispatcher.settings import ConfigError, load_settings

REGISTRY = default_registry()
MIB = 1024 * 1024
rates = st.floats(min_value=0.5, max_value=2000, allow_nan=False)
bursts = st.integers(min_value=1, max_value=500)


def test_default_limits_need_two_pods_of_a_quarter_core():
    """13 start calls/s and 25 polls/s cost 0.06 of a core: two pods, the floor, and a prefetch of 10."""
    figures = capacity.recommend(load_settings(), REGISTRY)
    assert (figures.start_calls_per_s, figures.follow_calls_per_s) == (13.0, 25.0)
    assert figures.cores == pytest.approx(38 * 1.63e-3, abs=1e-3)
    assert (figures.min_replicas, figures.max_replicas, figures.expected_replicas) == (2, 2, 2)
    assert (figures.concurrency, figures.follow_concurrency) == (10, 10)
    assert figures.cpu_request == "250m"
    assert figures.memory_limit == figures.memory_request == "1536Mi"  # 160 + (110 x 12 + 28) MiB, rounded up


def test_regions_multiply_the_rates_of_every_queue():
    """Each enabled region has its own limiter, so an operation's queue serves the sum of their rates."""
    one = capacity.recommend(load_settings(aws_region="us-east-1"), REGISTRY)
    two = capacity.recommend(load_settings(aws_region="us-east-1", aws_regions=["eu-west-1"]), REGISTRY)
    assert two.start_calls_per_s == 2 * one.start_calls_per_s
    assert two.follow_calls_per_s == 2 * one.follow_calls_per_s
    assert two.concurrency == 2 * one.concurrency


@given(rate=rates, burst=bursts)
def test_replicas_cover_the_call_rate_with_a_pod_to_spare(rate, burst):
    """Max replicas at half a core each carry the fleet's calls with one pod draining; expected equals max."""
    limit = {"rate": rate, "burst": burst}
    settings = load_settings(default_rate_limit=limit, default_follow_rate_limit=limit)
    figures = capacity.recommend(settings, REGISTRY)
    calls = 10 * rate  # five starts and five Describe/Get calls
    assert figures.start_calls_per_s + figures.follow_calls_per_s == pytest.approx(calls, rel=1e-3)
    assert (figures.max_replicas - 1) * capacity.CORE_SHARE_PER_POD >= calls * capacity.CPU_S_PER_CALL - 1e-9
    assert figures.min_replicas <= figures.max_replicas == figures.expected_replicas
    assert figures.concurrency >= burst
    assert figures.concurrency >= rate * capacity.HOLD_S


@given(concurrency=st.integers(1, 200), follow=st.integers(1, 200), size=st.integers(1024, 16 * MIB))
def test_a_computed_memory_limit_admits_its_own_config(concurrency, follow, size):
    """Settings with a memory limit at the formula's worst case load; a MiB less is refused."""
    messages = capacity.in_flight_messages(concurrency, follow, len(REGISTRY), len(REGISTRY))
    need = math.ceil(capacity.worst_case_mib(messages, size))
    values = {"concurrency": concurrency, "follow_concurrency": follow, "max_message_bytes": size}
    assert load_settings(**values, memory_limit_mib=need).memory_limit_mib == need
    with pytest.raises(ConfigError, match="over the"):
        load_settings(**values, memory_limit_mib=need - 1)


def test_the_old_defaults_do_not_fit_a_gibibyte():
    """Prefetch 64 of 8 MiB messages over eleven queues is refused under a 1 GiB limit, in one sentence."""
    with pytest.raises(ConfigError) as raised:
        load_settings(concurrency=64, max_message_bytes=8 * MIB, memory_limit_mib=1024)
    assert "464 messages in flight" in str(raised.value)
    assert "lower concurrency, follow_concurrency or max_message_bytes" in str(raised.value)


def _short_key(number: int) -> str:
    digits = string.ascii_letters + string.digits
    key = digits[number % 62]
    while number := number // 62:
        key += digits[number % 62]
    return key


def _tiny_metadata_job(entries: int) -> bytes:
    """The costliest shape per byte measured: empty metadata entries with the shortest distinct keys."""
    job = {
        "job_id": "j1",
        "service": "m2",
        "operation": "StartBatchJob",
        "params": {"applicationId": "app-1", "batchJobIdentifier": {"fileBatchJobIdentifier": {"fileName": "a.jcl"}}},
        "metadata": {_short_key(i): "" for i in range(entries)},
    }
    return orjson.dumps(job)


def test_a_decoded_job_holds_no_more_than_the_factors_say():
    """Decoding a worst-shape body peaks under DECODE_PEAK and leaves under HELD - 1 times the body held.

    The factors are this interpreter's (Python 3.11, 64-bit): a new one fails here before it can
    break the memory bound.
    """
    body = _tiny_metadata_job(100_000)  # 0.9 MB: near the 1 MiB default
    decoder = Decoder(REGISTRY, "us-east-1", ("us-east-1",), max_message_bytes=len(body))
    gc.collect()
    tracemalloc.start()
    try:
        job = decoder.decode(body, "m2.StartBatchJob", None)
        _, peak = tracemalloc.get_traced_memory()
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert job.metadata
    assert peak <= capacity.DECODE_PEAK_PER_BODY_BYTE * len(body)
    assert held <= (capacity.HELD_PER_BODY_BYTE - 1) * len(body)  # the body itself is the last one
