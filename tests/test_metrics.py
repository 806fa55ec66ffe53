"""Tests for lsm.metrics: sliding-window rates, latency percentiles, the per-op registry."""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from lsm.metrics import DEFAULT_OPS, LatencyHistogram, Metrics, RateCounter, SampledRate

FAST = settings(max_examples=200, deadline=None)
BUCKET_RATIO = 2 ** (1 / 8)  # width of one histogram bucket
TOP_US = 2 ** (213 / 8)  # start of the overflow bucket


class FakeClock:
    """A settable clock: ``clock()`` returns ``clock.t``."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run_threads(count: int, target: Callable[[], None]) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- RateCounter: arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"window": 0}, "window"),
        ({"window": -1.0}, "window"),
        ({"window": math.nan}, "window"),
        ({"window": math.inf}, "window"),
        ({"bucket": 0}, "bucket"),
        ({"bucket": -0.5}, "bucket"),
        ({"bucket": math.nan}, "bucket"),
        ({"window": 1.0, "bucket": 2.0}, "bucket must be <= window"),
    ],
)
def test_rate_counter_validates_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RateCounter(**kwargs)


@pytest.mark.parametrize(
    ("window", "bucket", "slots"),
    [(60.0, 1.0, 60), (2.5, 1.0, 3), (1.1, 0.1, 11), (0.3, 0.1, 3), (1.0, 1.0, 1), (10.0, 3.0, 4)],
)
def test_ring_has_ceil_window_over_bucket_slots(window: float, bucket: float, slots: int) -> None:
    counter = RateCounter(window, bucket, clock=FakeClock())
    assert len(counter._counts) == len(counter._stamps) == slots
    assert counter.window == pytest.approx(slots * bucket)


def test_record_rejects_negative_counts() -> None:
    counter = RateCounter(clock=FakeClock())
    with pytest.raises(ValueError, match="n must be >= 0"):
        counter.record(-1)
    assert counter.total() == 0


# --- RateCounter: windows ----------------------------------------------------------------


def test_rate_is_zero_before_any_event() -> None:
    clock = FakeClock(50.0)
    counter = RateCounter(clock=clock)
    assert counter.rate() == 0.0 and counter.total() == 0
    clock.t = 500.0
    assert counter.rate() == 0.0


def test_window_edges() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=10.0, bucket=1.0, clock=clock)
    clock.t = 0.5
    counter.record(5)
    clock.t = 9.5
    assert counter.rate() == pytest.approx(5 / 9.5)
    clock.t = 9.999
    assert counter.rate() == pytest.approx(5 / 9.999)
    clock.t = 10.0  # bucket 0 is now outside buckets 1..10
    assert counter.rate() == 0.0
    assert counter.total() == 5


def test_rate_after_partial_window_averages_since_construction() -> None:
    clock = FakeClock(1000.0)
    counter = RateCounter(window=10.0, bucket=1.0, clock=clock)
    counter.record(10)
    clock.t = 1002.0
    counter.record(10)
    clock.t = 1004.0
    assert counter.rate() == pytest.approx(20 / 4.0)


def test_rate_right_after_construction_divides_by_one_bucket_at_least() -> None:
    clock = FakeClock(7.0)
    counter = RateCounter(window=10.0, bucket=1.0, clock=clock)
    clock.t = 7.25
    counter.record(10)
    assert counter.rate() == pytest.approx(10.0)


def test_bucket_roll_over_reuses_slots() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=3.0, bucket=1.0, clock=clock)
    for t, n in ((0.5, 1), (1.5, 2), (2.5, 4), (3.5, 8)):  # t=3.5 reuses the slot of t=0.5
        clock.t = t
        counter.record(n)
    assert counter.rate() == pytest.approx((2 + 4 + 8) / (3.5 - 1.0))
    clock.t = 4.0
    assert counter.rate() == pytest.approx((4 + 8) / (4.0 - 2.0))
    assert counter.total() == 15


def test_steady_traffic_reads_as_its_rate() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=60.0, bucket=1.0, clock=clock)
    for i in range(1600):  # 8 events per second for 200 s
        clock.t = i * 0.125
        counter.record()
    assert counter.rate() == pytest.approx(8.0, rel=0.01)
    assert counter.total() == 1600


def test_idle_gap_longer_than_the_window_clears() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=10.0, bucket=1.0, clock=clock)
    for second in range(10):
        clock.t = second + 0.5
        counter.record(10)
    clock.t = 1000.5
    assert counter.rate() == 0.0
    counter.record(3)
    assert counter.rate() == pytest.approx(3 / (1000.5 - 991.0))
    assert counter.total() == 103


def test_gap_of_exactly_one_lap_resets_the_shared_slot() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=10.0, bucket=1.0, clock=clock)
    clock.t = 5.5
    counter.record(7)
    clock.t = 15.5  # bucket 15 lands in the slot of bucket 5
    counter.record(1)
    assert counter.rate() == pytest.approx(1 / (15.5 - 6.0))
    assert counter.total() == 8


def test_rate_does_not_disturb_later_records() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=4.0, bucket=1.0, clock=clock)
    counter.record(2)
    clock.t = 2.5
    assert counter.rate() == pytest.approx(2 / 2.5)
    counter.record(3)
    assert counter.rate() == pytest.approx(5 / 2.5)


def test_clock_going_backwards_counts_in_the_newest_bucket() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=10.0, bucket=1.0, clock=clock)
    clock.t = 5.5
    counter.record(1)
    clock.t = 3.0
    counter.record(1)
    clock.t = 14.9
    assert counter.rate() == pytest.approx(2 / (14.9 - 5.0))
    clock.t = 15.0
    assert counter.rate() == 0.0
    assert counter.total() == 2


def test_fractional_buckets() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=1.0, bucket=0.25, clock=clock)
    for i in range(40):
        clock.t = i * 0.0625  # 16 per second for 2.5 s
        counter.record()
    assert counter.rate() == pytest.approx(16 / (2.4375 - 1.5))  # buckets 6..9: t in [1.5, 2.4375]


@FAST
@given(st.lists(st.tuples(st.floats(0, 50), st.integers(0, 5)), max_size=60), st.floats(0, 80))
def test_rate_matches_a_brute_force_model(events: list[tuple[float, int]], probe: float) -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=5.0, bucket=0.5, clock=clock)
    events.sort()
    for t, n in events:
        clock.t = t
        counter.record(n)
    now = max([probe] + [t for t, _ in events])
    clock.t = now
    oldest = int(now // 0.5) - 10 + 1
    in_window = sum(n for t, n in events if int(t // 0.5) >= oldest)
    span = max(now - max(oldest * 0.5, 0.0), 0.5)
    assert counter.rate() == pytest.approx(in_window / span)
    assert counter.total() == sum(n for _, n in events)


def test_memory_is_independent_of_traffic() -> None:
    clock = FakeClock(0.0)
    counter = RateCounter(window=5.0, bucket=1.0, clock=clock)
    for i in range(20_000):
        clock.t = i * 0.37
        counter.record()
    assert len(counter._counts) == len(counter._stamps) == 5
    assert counter.total() == 20_000


# --- RateCounter: threads -------------------------------------------------------------------


def test_threads_recording_keep_an_exact_total() -> None:
    counter = RateCounter(window=0.05, bucket=0.001)  # real clock: frequent roll-over

    def work() -> None:
        for _ in range(5_000):
            counter.record()

    run_threads(8, work)
    assert counter.total() == 40_000
    assert counter.rate() >= 0.0


def test_threads_lose_no_events_across_roll_over() -> None:
    ticks = itertools.count()
    frozen: list[float] = []

    def clock() -> float:
        return frozen[0] if frozen else next(ticks) * 1e-4

    counter = RateCounter(window=1000.0, bucket=0.01, clock=clock)

    def work() -> None:
        for _ in range(5_000):
            counter.record(2)

    run_threads(4, work)
    frozen.append(5.0)  # after ~2.0 s of fake time: every bucket is still in the window
    assert counter.total() == 40_000
    assert counter.rate() == pytest.approx(40_000 / 5.0)


# --- SampledRate ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"window": 0.0}, "window"), ({"window": math.inf}, "window"), ({"bucket": 0.0}, "bucket"),
    ({"window": 1.0, "bucket": 2.0}, "bucket"),
])
def test_sampled_rate_validates_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SampledRate(**kwargs)


def test_sampled_rate_averages_since_construction_in_the_first_window() -> None:
    clock = FakeClock(50.0)
    rate = SampledRate(window=10.0, bucket=1.0, clock=clock, total=7)
    assert rate.rate(7) == 0.0
    clock.t = 54.0
    assert rate.rate(47) == pytest.approx(10.0)  # 40 events in 4 s; no sample needed
    clock.t = 50.25
    assert rate.rate(12) == pytest.approx(5.0)  # less than a bucket: divides by one bucket


def test_sampled_rate_steady_traffic_reads_as_its_rate() -> None:
    clock = FakeClock(0.0)
    rate = SampledRate(window=10.0, bucket=1.0, clock=clock)
    total = 0
    for second in range(1, 200):
        total += 8 if second < 100 else 3  # 8/s, then 3/s
        clock.t = float(second)
        rate.sample(total)
        if second in (99, 199):
            assert rate.rate(total) == pytest.approx(8.0 if second == 99 else 3.0)


def test_sampled_rate_window_is_between_window_minus_bucket_and_window() -> None:
    clock = FakeClock(0.0)
    rate = SampledRate(window=10.0, bucket=1.0, clock=clock)
    for second in range(1, 31):
        clock.t = float(second)
        rate.sample(100 * second if second <= 20 else 2000)  # 100/s until t=20, then idle
    clock.t = 25.5  # samples at 16..25 are in the window; 16 is the oldest: 400 events in 9.5 s
    assert rate.rate(2000) == pytest.approx(400 / 9.5)
    clock.t = 30.9
    assert rate.rate(2000) == 0.0


def test_sampled_rate_stalled_sampler_uses_the_newest_older_sample() -> None:
    clock = FakeClock(0.0)
    rate = SampledRate(window=10.0, bucket=1.0, clock=clock)
    clock.t = 3.0
    rate.sample(30)
    clock.t = 20.0  # nothing sampled for 17 s: average since t=3, not a guess
    assert rate.rate(200) == pytest.approx(170 / 17)


def test_sampled_rate_memory_is_bounded_whatever_the_sampling() -> None:
    clock = FakeClock(0.0)
    rate = SampledRate(window=10.0, bucket=1.0, clock=clock)
    for i in range(100_000):
        clock.t = i * 0.01  # 100 samples per bucket: all but one per half bucket skipped
        rate.sample(i)
    assert len(rate._samples) <= 2 * 10 + 2
    assert rate.rate(100_000) == pytest.approx(100.0, rel=0.06)


def test_sampled_rate_threads_sampling_and_reading() -> None:
    rate = SampledRate(window=1.0, bucket=0.001)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(2000):
                rate.sample(i)
                assert rate.rate(i) >= 0.0
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    run_threads(8, work)
    assert not errors


# --- LatencyHistogram ----------------------------------------------------------------------


def nearest_rank(samples_us: list[float], p: float) -> float:
    ordered = sorted(samples_us)
    rank = max(1, math.ceil(p * len(ordered) / 100 - 1e-9))
    return ordered[rank - 1]


def test_empty_histogram() -> None:
    hist = LatencyHistogram()
    assert hist.count == 0 and hist.percentile(50) == 0.0
    assert hist.snapshot() == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "mean": 0.0, "count": 0}


def test_single_sample_is_exact() -> None:
    hist = LatencyHistogram()
    hist.record(0.0123)
    assert [hist.percentile(p) for p in (0, 50, 99, 100)] == [pytest.approx(12300.0)] * 4


@FAST
@given(
    st.lists(st.floats(min_value=0.0, max_value=150.0) | st.floats(1e-7, 1e-2), min_size=1, max_size=200),
    st.floats(0, 100),
)
def test_percentile_is_within_one_bucket(samples: list[float], p: float) -> None:
    hist = LatencyHistogram()
    for seconds in samples:
        hist.record(seconds)
    exact = nearest_rank([s * 1e6 for s in samples], p)
    got = hist.percentile(p)
    if exact < 1.0:
        assert abs(got - exact) <= 1.0
    elif exact < TOP_US:
        assert exact / BUCKET_RATIO * (1 - 1e-12) <= got <= exact * BUCKET_RATIO * (1 + 1e-12)
    else:
        # past the last bucket: the overflow bucket answers with the maximum,
        # except that rank 1 (and rank n) are kept exactly (min and max)
        assert got in (exact, max(s * 1e6 for s in samples))
    assert hist.count == len(samples)
    assert hist.percentile(0) == pytest.approx(min(samples) * 1e6)
    assert hist.percentile(100) == pytest.approx(max(samples) * 1e6)


def test_uniform_percentiles() -> None:
    hist = LatencyHistogram()
    for us in range(1, 10_001):
        hist.record(us / 1e6)
    snap = hist.snapshot()
    assert snap["count"] == 10_000
    assert snap["p50"] == pytest.approx(5000, rel=0.09)
    assert snap["p99"] == pytest.approx(9900, rel=0.09)
    assert snap["max"] == pytest.approx(10_000)
    assert snap["mean"] == pytest.approx(5000.5)


def test_sub_microsecond_and_overflow_samples() -> None:
    hist = LatencyHistogram()
    hist.record(0.0)
    hist.record(4e-7)
    assert hist.percentile(100) == pytest.approx(0.4)
    big = LatencyHistogram()
    for seconds in (1000.0, 2000.0, 3000.0):
        big.record(seconds)
    assert big.percentile(50) == 3e9  # the overflow bucket reports the maximum
    assert big.percentile(0) == 1e9


@pytest.mark.parametrize("bad", [-1e-9, -5.0, math.nan, math.inf, -math.inf])
def test_record_rejects_bad_durations(bad: float) -> None:
    hist = LatencyHistogram()
    with pytest.raises(ValueError, match="seconds must be finite and >= 0"):
        hist.record(bad)
    assert hist.count == 0


@pytest.mark.parametrize("bad", [-0.1, 100.5, math.nan])
def test_percentile_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match=r"p must be in \[0, 100\]"):
        LatencyHistogram().percentile(bad)


def test_histogram_threads_keep_an_exact_count() -> None:
    hist = LatencyHistogram()

    def work() -> None:
        for i in range(5_000):
            hist.record((i % 100) * 1e-5)

    run_threads(6, work)
    assert hist.count == 30_000
    assert sum(hist._counts) == 30_000


# --- Metrics ---------------------------------------------------------------------------------


def test_default_ops_are_reported_before_any_record() -> None:
    snap = Metrics(clock=FakeClock()).snapshot()
    assert sorted(snap["qps"]) == sorted(DEFAULT_OPS) == sorted(snap["latency"])
    assert all(v == 0.0 for v in snap["qps"].values())
    assert json.loads(json.dumps(snap)) == snap


def test_record_feeds_rate_and_latency() -> None:
    clock = FakeClock(0.0)
    metrics = Metrics(window=10.0, bucket=1.0, clock=clock)
    for _ in range(40):
        metrics.record("get", 0.0002)
    metrics.record("write", 0.004, n=10)  # one batch of 10 operations
    clock.t = 4.0
    snap = metrics.snapshot()
    assert snap["qps"]["get"] == pytest.approx(10.0)
    assert snap["qps"]["write"] == pytest.approx(2.5)
    assert snap["latency"]["get"]["count"] == 40
    assert snap["latency"]["get"]["p50"] == pytest.approx(200.0)
    assert snap["latency"]["write"]["count"] == 1
    assert metrics.rate("write").total() == 10
    assert metrics.latency("get").count == 40
    json.dumps(snap)


def test_unknown_ops_are_added_on_first_use() -> None:
    metrics = Metrics(ops=(), clock=FakeClock())
    assert metrics.snapshot() == {"qps": {}, "latency": {}}
    metrics.record("compact", 1.5)
    assert list(metrics.snapshot()["latency"]) == ["compact"]
    with pytest.raises(TypeError, match="op must be a str"):
        metrics.record(b"get", 0.1)  # type: ignore[arg-type]


def test_bad_record_leaves_no_trace() -> None:
    metrics = Metrics(clock=FakeClock())
    with pytest.raises(ValueError, match="seconds"):
        metrics.record("get", -1.0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        metrics.record("get", 0.1, n=-1)
    assert metrics.rate("get").total() == 0 and metrics.latency("get").count == 0


def test_metrics_validates_window_and_bucket() -> None:
    with pytest.raises(ValueError, match="bucket"):
        Metrics(window=1.0, bucket=5.0)


def test_metrics_threads_keep_exact_counts() -> None:
    metrics = Metrics(window=0.05, bucket=0.001)

    def work() -> None:
        for i in range(3_000):
            metrics.record("get" if i % 2 else f"op{i % 3}", 1e-5)

    run_threads(8, work)
    assert metrics.rate("get").total() == metrics.latency("get").count == 12_000
    total = sum(metrics.latency(op).count for op in metrics.snapshot()["latency"])
    assert total == 24_000


def test_record_stays_cheap() -> None:
    """A loose guard against accidental O(n) work: the measured cost is ~0.7 µs."""
    metrics = Metrics()
    start = time.perf_counter()
    for _ in range(20_000):
        metrics.record("put", 1e-4)
    per_call = (time.perf_counter() - start) / 20_000
    assert per_call < 20e-6
