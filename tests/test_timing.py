"""``vitlab.timing.interleaved_medians`` runs its calls in turn, round after round, and reports each one's median."""

import torch

from vitlab.timing import interleaved_medians


def test_calls_run_interleaved_and_each_reports_its_median_and_last_result():
    order, clock = [], iter(range(100))

    def call(name):
        def fn():
            order.append(name)
            return next(clock)
        return fn

    times, results = interleaved_medians({"a": call("a"), "b": call("b")}, repeats=3, device=torch.device("cpu"))
    assert order == ["a", "b"] * 3
    assert results == {"a": 4, "b": 5}
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


def test_a_slower_call_has_the_larger_median():
    import time
    times, _ = interleaved_medians({"fast": lambda: None, "slow": lambda: time.sleep(0.02)}, repeats=3,
                                   device=torch.device("cpu"))
    assert times["slow"] >= 0.02 > times["fast"]
