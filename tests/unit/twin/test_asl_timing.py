"""Time scale: waits scale, the timeouts that bound real work never do (asl/timing.py)."""

import threading
import time

from mlops.twin.stepfunctions.asl import AslEngine
from mlops.twin.stepfunctions.asl.timing import ExecutionClock

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:M"
FN = "arn:aws:lambda:us-east-1:123456789012:function:fn"
FAST = 0.001  # a twin hour in 3.6 real seconds


def run(definition, handler=lambda p, c: "done", time_scale=FAST, name="e"):
    engine = AslEngine(lambda resource, params, ctx: handler(params, ctx), time_scale=time_scale)
    started = time.monotonic()
    execution = engine.run(ARN, definition, {}, name)
    return execution, time.monotonic() - started


def work(seconds):
    return lambda p, c: time.sleep(seconds) or "done"


def task(**fields):
    return {"Type": "Task", "Resource": FN, **fields}


def test_task_timeout_is_real_time_at_any_scale():
    # 0.3 s of real work under a 1 s TimeoutSeconds: scaled by 0.001 it would have been 1 ms.
    ex, _ = run({"StartAt": "T", "States": {"T": task(TimeoutSeconds=1, End=True)}}, work(0.3))
    assert ex.status == "SUCCEEDED"


def test_task_timeout_still_ends_work_that_overruns_it():
    release = threading.Event()
    ex, took = run({"StartAt": "T", "States": {"T": task(TimeoutSeconds=1, End=True)}}, lambda p, c: release.wait(5))
    release.set()
    assert ex.error == "States.Timeout" and 0.9 <= took < 3


def test_timeout_seconds_path_and_heartbeat_reach_the_task_unscaled():
    seen = []
    definition = {"StartAt": "T", "States": {"T": task(TimeoutSecondsPath="$.t", HeartbeatSeconds=60, End=True)}}
    engine = AslEngine(lambda r, p, ctx: seen.append(ctx), time_scale=FAST)
    engine.run(ARN, definition, {"t": 600}, "e")
    assert (seen[0].timeout_s, seen[0].heartbeat_s) == (600, 60)


def test_execution_timeout_does_not_cut_real_work_short():
    # The execution allows 1 s; its Task works 0.3 s. Scaled, the limit would have been 1 ms.
    definition = {"TimeoutSeconds": 1, "StartAt": "T", "States": {"T": task(End=True)}}
    ex, _ = run(definition, work(0.3))
    assert ex.status == "SUCCEEDED"


def test_execution_timeout_counts_main_path_waits_at_full_length():
    # A 1000 s Wait takes 1 real second at 0.001, but AWS would time out at 500 s: so does
    # the twin, half way through the wait (0.5 real seconds), not after it.
    wait = {"Type": "Wait", "Seconds": 1000, "End": True}
    ex, took = run({"TimeoutSeconds": 500, "StartAt": "W", "States": {"W": wait}})
    assert ex.status == "TIMED_OUT" and ex.error == "States.Timeout"
    assert ex.history[-1]["type"] == "ExecutionTimedOut"
    assert 0.45 <= took < 0.9


def test_execution_timeout_adds_waits_and_work():
    # 0.3 s of work + a 400 s wait (0.4 real s) passes 300 AWS seconds 0.3 s into the wait.
    definition = {
        "TimeoutSeconds": 300,
        "StartAt": "T",
        "States": {"T": task(Next="W"), "W": {"Type": "Wait", "Seconds": 400, "End": True}},
    }
    ex, took = run(definition, work(0.3))
    assert ex.status == "TIMED_OUT" and took < 1.0
    ok = {**definition, "TimeoutSeconds": 405}
    ex, _ = run(ok, work(0.3), name="ok")
    assert ex.status == "SUCCEEDED"


def test_retry_intervals_scale_and_count_on_the_main_path():
    calls = []

    def fail_once(p, c):
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("transient")
        return "ok"

    retry = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 200, "MaxAttempts": 1}]
    ex, _ = run({"StartAt": "T", "States": {"T": task(Retry=retry, End=True)}}, fail_once)
    assert ex.status == "SUCCEEDED" and 0.19 <= calls[1] - calls[0] < 1.0
    limited = {"TimeoutSeconds": 100, "StartAt": "T", "States": {"T": task(Retry=retry, End=True)}}
    calls.clear()
    ex, _ = run(limited, fail_once, name="limited")
    assert ex.status == "TIMED_OUT" and len(calls) == 1


def test_waits_inside_parallel_branches_are_not_credited():
    # Documented limit: a branch's wait overlaps other work, so it is not counted against
    # the execution's TimeoutSeconds (the twin may run longer than AWS, never shorter).
    waiting = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 300, "End": True}}}
    definition = {
        "TimeoutSeconds": 60,
        "StartAt": "P",
        "States": {"P": {"Type": "Parallel", "Branches": [waiting], "End": True}},
    }
    ex, _ = run(definition)
    assert ex.status == "SUCCEEDED"


def test_execution_clock_counts_a_wait_as_its_length():
    clock = ExecutionClock(0.01)
    with clock.waiting(5):  # 5 twin seconds: 0.05 real
        assert clock.rate() == 100
        time.sleep(0.02)
        assert 1.5 < clock.elapsed() < 4  # ~0.02 s of waiting counts ~2 s
        time.sleep(0.1)  # overslept: the wait still counts 5 s, not 12
        assert clock.rate() == 1 and 4.99 < clock.elapsed() < 5.1
    assert 4.99 < clock.elapsed() < 5.1  # real time outside waits only adds to it


def test_deadline_reached_as_the_execution_ends_is_a_time_out():
    # Work 0.3 s + a 300 s wait ends 0.3 AWS seconds past a 300 s limit: TIMED_OUT even if the
    # watcher has not woken in the last instant of the wait.
    definition = {
        "TimeoutSeconds": 300,
        "StartAt": "T",
        "States": {"T": task(Next="W"), "W": {"Type": "Wait", "Seconds": 300, "End": True}},
    }
    ex, _ = run(definition, work(0.3))
    assert ex.status == "TIMED_OUT"
