"""State semantics: data flow, Task, Retry/Catch, errors, Wait, Fail, Parallel and Map."""

import threading
import time
import uuid

import pytest

from mlops.twin.stepfunctions.asl import AslEngine, TaskFailed, retry

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:M"
FN = "arn:aws:lambda:us-east-1:123456789012:function:fn"


def run(definition, data=None, handlers=None, **engine_kwargs):
    handlers = handlers or {}

    def dispatch(resource, parameters, ctx):
        return handlers[resource](parameters, ctx) if resource in handlers else handlers[FN](parameters, ctx)

    engine = AslEngine(dispatch, time_scale=engine_kwargs.pop("time_scale", 0.001))
    execution = engine.run(ARN, definition, data, str(uuid.uuid4()))
    assert execution.status != "RUNNING"
    return execution


def one(state, **extra):
    return {"StartAt": "S", "States": {"S": {**state, "End": True}, **extra}}


def task(**fields):
    return one({"Type": "Task", "Resource": FN, **fields})


# -- input and output processing ------------------------------------------------------
def test_doc_example_inputpath_resultpath_outputpath():
    # "Example: Manipulating state data with paths" (AWS developer guide).
    data = {
        "comment": "An input comment.",
        "data": {"val1": 23, "val2": 17},
        "extra": "foo",
        "lambda": {"who": "AWS Step Functions"},
    }
    seen = []

    def hello(params, ctx):
        seen.append(params)
        return f"Hello, {params['who']}!"

    ex = run(task(InputPath="$.lambda", ResultPath="$.data.lambdaresult", OutputPath="$.data"), data, {FN: hello})
    assert seen == [{"who": "AWS Step Functions"}]
    assert ex.output == {"val1": 23, "val2": 17, "lambdaresult": "Hello, AWS Step Functions!"}


def test_doc_example_inputpath_parameters_resultselector():
    data = {"comment": "Example for InputPath.", "dataset1": {"val1": 1}, "dataset2": {"val1": "a", "val2": "b"}}
    result = {"ExecutedVersion": "$LATEST", "Payload": {"foo": "bar"}, "StatusCode": 200, "SdkHttpMetadata": {}}
    seen = []

    def invoke(params, ctx):
        seen.append(params)
        return result

    state = {
        "InputPath": "$.dataset2",
        "Parameters": {"FunctionName": "fn", "Payload": {"v.$": "$.val1"}},
        "ResultSelector": {"body.$": "$.Payload", "statusCode.$": "$.StatusCode"},
        "ResultPath": "$.TaskResult",
    }
    ex = run(task(**state), data, {FN: invoke})
    assert seen == [{"FunctionName": "fn", "Payload": {"v": "a"}}]
    assert ex.output == {**data, "TaskResult": {"body": {"foo": "bar"}, "statusCode": 200}}


def test_resultpath_null_keeps_input_and_null_paths_give_empty_object():
    assert run(task(ResultPath=None), {"a": 1}, {FN: lambda p, c: "x"}).output == {"a": 1}
    seen = []
    ex = run(task(InputPath=None, OutputPath=None), {"a": 1}, {FN: lambda p, c: seen.append(p) or "x"})
    assert seen == [{}] and ex.output == {}


def test_pass_result_and_resultpath():
    ex = run(one({"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r.s"}), {"in": True})
    assert ex.output == {"in": True, "r": {"s": {"x": 1}}}


def test_pass_parameters_with_context_object():
    params = {"exec.$": "$$.Execution.Name", "state.$": "$$.State.Name", "machine.$": "$$.StateMachine.Name"}
    ex = run(one({"Type": "Pass", "Parameters": params}), {})
    assert ex.output == {"exec": ex.name, "state": "S", "machine": "M"}


def test_pass_without_anything_passes_input_through():
    assert run(one({"Type": "Pass"}), [1, 2]).output == [1, 2]


def test_bad_inputpath_is_runtime_and_not_caught_by_states_all():
    state = {"InputPath": "$.missing", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}]}
    calls = []
    definition = task(**state)
    definition["States"]["H"] = {"Type": "Succeed"}
    ex = run(definition, {}, {FN: lambda p, c: calls.append(p)})
    assert ex.status == "FAILED" and ex.error == "States.Runtime" and calls == []


def test_resultpath_match_failure_is_catchable():
    definition = task(ResultPath="$.a.b", Catch=[{"ErrorEquals": ["States.ResultPathMatchFailure"], "Next": "H"}])
    definition["States"]["H"] = {"Type": "Pass", "End": True}
    ex = run(definition, {"a": "scalar"}, {FN: lambda p, c: 1})
    assert ex.status == "SUCCEEDED" and ex.output["Error"] == "States.ResultPathMatchFailure"


def test_parameter_path_failure():
    ex = run(task(Parameters={"x.$": "$.nope"}), {}, {FN: lambda p, c: 1})
    assert ex.error == "States.ParameterPathFailure"


def test_intrinsic_failure_in_parameters():
    ex = run(task(Parameters={"x.$": "States.ArrayLength($.s)"}), {"s": "no"}, {FN: lambda p, c: 1})
    assert ex.error == "States.IntrinsicFailure"


def test_data_limit_exceeded():
    ex = run(task(), {}, {FN: lambda p, c: "x" * (256 * 1024 + 1)})
    assert ex.status == "FAILED" and ex.error == "States.DataLimitExceeded"


def test_data_limit_not_caught_by_states_all_but_by_name():
    def machine(names):
        definition = task(Catch=[{"ErrorEquals": names, "Next": "H"}])
        definition["States"]["H"] = {"Type": "Pass", "Result": "handled", "End": True}
        return definition

    big = {FN: lambda p, c: "x" * (256 * 1024 + 1)}
    assert run(machine(["States.ALL"]), {}, big).error == "States.DataLimitExceeded"
    assert run(machine(["States.DataLimitExceeded"]), {}, big).output == "handled"


# -- Task errors, Retry, Catch --------------------------------------------------------
def test_task_failed_error_and_cause():
    def boom(p, c):
        raise TaskFailed("Custom.Error", "it broke")

    ex = run(task(), {}, {FN: boom})
    assert (ex.status, ex.error, ex.cause) == ("FAILED", "Custom.Error", "it broke")
    assert ex.failed_state() == "S"


def test_other_exception_becomes_class_name():
    def boom(p, c):
        raise ValueError("bad value")

    ex = run(task(), {}, {FN: boom})
    assert (ex.error, ex.cause) == ("ValueError", "bad value")


def test_retry_backoff_sequence_doc():
    retrier = {"ErrorEquals": ["X"], "IntervalSeconds": 3, "BackoffRate": 2.0, "MaxAttempts": 4}
    assert [retry.delay(retrier, n) for n in range(4)] == [3, 6, 12, 24]
    assert [retry.delay({"ErrorEquals": ["X"]}, n) for n in range(3)] == [1, 2, 4]  # defaults
    capped = {**retrier, "MaxDelaySeconds": 10}
    assert [retry.delay(capped, n) for n in range(4)] == [3, 6, 10, 10]


def test_retry_full_jitter_stays_within_bounds():
    retrier = {"ErrorEquals": ["X"], "IntervalSeconds": 4, "JitterStrategy": "FULL"}
    values = [retry.delay(retrier, 1) for _ in range(50)]
    assert all(0 <= v <= 8 for v in values) and len(set(values)) > 1


def test_retry_until_success_counts_attempts_and_retry_count():
    calls = []

    def flaky(p, c):
        calls.append(p)
        if len(calls) < 3:
            raise TaskFailed("Transient", "try again")
        return "ok"

    params = {"retry.$": "$$.State.RetryCount"}
    ex = run(task(Parameters=params, Retry=[{"ErrorEquals": ["Transient"], "MaxAttempts": 3}]), {}, {FN: flaky})
    assert ex.output == "ok" and calls == [{"retry": 0}, {"retry": 1}, {"retry": 2}]
    assert [e["type"] for e in ex.history].count("TaskScheduled") == 3


def test_retry_doc_example_errors_a_b_c_b_go_to_catch():
    # Concepts > error handling: ErrorA, ErrorB, ErrorC, ErrorB -> the fourth exceeds the
    # first retrier's MaxAttempts 2 and the Catch takes over.
    errors = iter(["ErrorA", "ErrorB", "ErrorC", "ErrorB"])

    def fail(p, c):
        raise TaskFailed(next(errors), "")

    definition = task(
        Retry=[
            {"ErrorEquals": ["ErrorA", "ErrorB"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 2},
            {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5},
        ],
        Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Z"}],
    )
    definition["States"]["Z"] = {"Type": "Pass", "End": True}
    ex = run(definition, {}, {FN: fail})
    assert ex.output == {"Error": "ErrorB", "Cause": ""}
    assert [e["type"] for e in ex.history].count("TaskFailed") == 4


def test_max_attempts_zero_never_retries():
    calls = []

    def fail(p, c):
        calls.append(1)
        raise TaskFailed("E")

    run(task(Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}]), {}, {FN: fail})
    assert len(calls) == 1


def test_retry_on_states_all_matches_any_task_error():
    calls = []

    def fail(p, c):
        calls.append(1)
        raise TaskFailed("Whatever")

    run(task(Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}]), {}, {FN: fail})
    assert len(calls) == 3


def test_retry_on_task_failed_is_a_wildcard_for_any_error():
    # AWS error-handling docs: States.TaskFailed in a retrier matches any error but States.Timeout.
    calls = []

    def fail(p, c):
        calls.append(1)
        raise TaskFailed("Lambda.Unknown", "out of memory")

    ex = run(task(Retry=[{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2}]), {}, {FN: fail})
    assert len(calls) == 3 and ex.error == "Lambda.Unknown"


def test_task_failed_does_not_match_states_timeout():
    calls = []

    def time_out(p, c):
        calls.append(1)
        raise TaskFailed("States.Timeout", "too slow")

    definition = task(
        Retry=[{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2}],
        Catch=[{"ErrorEquals": ["States.TaskFailed"], "Next": "H"}],
    )
    definition["States"]["H"] = {"Type": "Pass", "End": True}
    ex = run(definition, {}, {FN: time_out})
    assert len(calls) == 1 and ex.status == "FAILED" and ex.error == "States.Timeout"


def test_catch_on_task_failed_catches_other_errors():
    def fail(p, c):
        raise TaskFailed("ValidationError", "bad rows")

    definition = task(Catch=[{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.err", "Next": "H"}])
    definition["States"]["H"] = {"Type": "Pass", "End": True}
    ex = run(definition, {"a": 1}, {FN: fail})
    assert ex.status == "SUCCEEDED" and ex.output == {"a": 1, "err": {"Error": "ValidationError", "Cause": "bad rows"}}


@pytest.mark.parametrize(
    ("names", "error", "matches"),
    [
        (["States.TaskFailed"], "Anything", True),
        (["States.TaskFailed"], "States.Timeout", False),
        (["States.TaskFailed"], "States.HeartbeatTimeout", False),
        (["States.TaskFailed"], "States.Runtime", False),
        (["States.TaskFailed"], "States.DataLimitExceeded", False),
        (["States.Timeout"], "States.Timeout", True),
        (["States.ALL"], "States.Timeout", True),
        (["States.ALL"], "States.DataLimitExceeded", False),
        (["States.DataLimitExceeded"], "States.DataLimitExceeded", True),
        (["States.ALL"], "States.Runtime", False),
    ],
)
def test_error_matching_table(names, error, matches):
    from mlops.twin.stepfunctions.asl.errors import error_matches

    assert error_matches(names, error) is matches


def test_catch_resultpath_keeps_input():
    def fail(p, c):
        raise TaskFailed("Boom", "details")

    definition = task(Catch=[{"ErrorEquals": ["Boom"], "ResultPath": "$.error", "Next": "H"}])
    definition["States"]["H"] = {"Type": "Pass", "End": True}
    ex = run(definition, {"order": 1}, {FN: fail})
    assert ex.output == {"order": 1, "error": {"Error": "Boom", "Cause": "details"}}
    assert [e["type"] for e in ex.history if e["type"].endswith("Exited")] == ["TaskStateExited", "PassStateExited"]


def test_catchers_evaluated_in_order():
    def fail(p, c):
        raise TaskFailed("B")

    definition = task(Catch=[{"ErrorEquals": ["A"], "Next": "HA"}, {"ErrorEquals": ["B", "C"], "Next": "HB"}])
    definition["States"]["HA"] = {"Type": "Pass", "Result": "a", "End": True}
    definition["States"]["HB"] = {"Type": "Pass", "Result": "b", "End": True}
    assert run(definition, {}, {FN: fail}).output == "b"


def test_task_timeout():
    release = threading.Event()
    ex = run(task(TimeoutSeconds=1), {}, {FN: lambda p, c: release.wait(3) and "late"}, time_scale=0.01)
    release.set()
    assert ex.error == "States.Timeout"
    assert "TaskTimedOut" in [e["type"] for e in ex.history]


def test_timeout_seconds_path_and_context_passed_to_dispatcher():
    seen = []
    run(task(TimeoutSecondsPath="$.t", HeartbeatSeconds=3), {"t": 60}, {FN: lambda p, c: seen.append(c)})
    ctx = seen[0]
    assert (ctx.state_name, ctx.timeout_s, ctx.heartbeat_s, ctx.task_token) == ("S", 60, 3, None)
    assert ctx.execution_arn.startswith("arn:aws:states:us-east-1:123456789012:execution:M:")


def test_wait_for_task_token_has_token_in_context():
    resource = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    seen = []
    definition = one({"Type": "Task", "Resource": resource, "Parameters": {"token.$": "$$.Task.Token"}})
    run(definition, {}, {resource: lambda p, c: seen.append((p, c.task_token))})
    assert seen[0][0]["token"] == seen[0][1] and seen[0][1]


# -- Wait, Succeed, Fail --------------------------------------------------------------
@pytest.mark.parametrize(
    "field",
    [{"Seconds": 10}, {"SecondsPath": "$.s"}, {"Timestamp": "2000-01-01T00:00:00Z"}, {"TimestampPath": "$.ts"}],
)
def test_wait_variants(field):
    started = time.monotonic()
    ex = run(one({"Type": "Wait", **field}), {"s": 10, "ts": "2000-01-01T00:00:00Z"})
    assert ex.status == "SUCCEEDED" and time.monotonic() - started < 1


def test_wait_is_scaled():
    started = time.monotonic()
    run(one({"Type": "Wait", "Seconds": 20}), {}, time_scale=0.01)
    assert 0.19 <= time.monotonic() - started < 1.5


def test_wait_seconds_path_must_be_number():
    assert run(one({"Type": "Wait", "SecondsPath": "$.s"}), {"s": "ten"}).error == "States.Runtime"


def test_succeed_applies_paths():
    definition = {"StartAt": "S", "States": {"S": {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}}}
    assert run(definition, {"a": {"b": 5}}).output == 5


def test_fail_with_error_and_cause():
    definition = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "MyError", "Cause": "because"}}}
    ex = run(definition, {})
    assert (ex.status, ex.error, ex.cause, ex.failed_state()) == ("FAILED", "MyError", "because", "F")


def test_fail_with_error_path_and_intrinsic_cause_path():
    state = {"Type": "Fail", "ErrorPath": "$.err", "CausePath": "States.Format('code {}', $.code)"}
    ex = run({"StartAt": "F", "States": {"F": state}}, {"err": "E.Dynamic", "code": 7})
    assert (ex.error, ex.cause) == ("E.Dynamic", "code 7")


# -- Choice ---------------------------------------------------------------------------
CHOICE = {
    "StartAt": "C",
    "States": {
        "C": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"},
                {
                    "And": [{"Variable": "$.n", "IsNumeric": True}, {"Variable": "$.n", "NumericLessThan": 0}],
                    "Next": "Neg",
                },
            ],
            "Default": "Small",
        },
        "Big": {"Type": "Pass", "Result": "big", "End": True},
        "Neg": {"Type": "Pass", "Result": "neg", "End": True},
        "Small": {"Type": "Pass", "Result": "small", "End": True},
    },
}


@pytest.mark.parametrize(("n", "expected"), [(11, "big"), (-1, "neg"), (5, "small")])
def test_choice_routes(n, expected):
    assert run(CHOICE, {"n": n}).output == expected


def test_choice_without_default_fails_no_choice_matched():
    definition = {
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "D"}]},
            "D": {"Type": "Succeed"},
        },
    }
    ex = run(definition, {"n": 2})
    assert ex.error == "States.NoChoiceMatched" and ex.failed_state() == "C"


# -- Parallel -------------------------------------------------------------------------
def branch(result):
    # State names are unique machine-wide, branches included (ASL spec; AWS: DUPLICATE_STATE_NAME).
    return {"StartAt": f"P{result}", "States": {f"P{result}": {"Type": "Pass", "Result": result, "End": True}}}


def test_parallel_results_in_branch_order():
    state = {"Type": "Parallel", "Branches": [branch(1), branch(2), branch(3)], "ResultPath": "$.r"}
    ex = run(one(state), {"in": 0})
    assert ex.output == {"in": 0, "r": [1, 2, 3]}
    types = [e["type"] for e in ex.history]
    assert types[:3] == ["ExecutionStarted", "ParallelStateEntered", "ParallelStateStarted"]
    assert types[-3:] == ["ParallelStateSucceeded", "ParallelStateExited", "ExecutionSucceeded"]


def test_parallel_branches_run_concurrently():
    barrier = threading.Barrier(2, timeout=2)

    def meet(p, c):
        barrier.wait()
        return p

    branches = [{"StartAt": t, "States": {t: {"Type": "Task", "Resource": FN, "End": True}}} for t in ("T1", "T2")]
    ex = run(one({"Type": "Parallel", "Branches": branches}), "x", {FN: meet})
    assert ex.output == ["x", "x"]


def test_parallel_failure_propagates_branch_error_and_is_catchable():
    failing = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Branch.Error", "Cause": "b2"}}}
    state = {"Type": "Parallel", "Branches": [branch(1), failing]}
    ex = run(one(state), {})
    assert (ex.status, ex.error, ex.cause) == ("FAILED", "Branch.Error", "b2")
    assert "ParallelStateFailed" in [e["type"] for e in ex.history]
    assert ex.failed_state() == "F"
    definition = one({**state, "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.e", "Next": "H"}]})
    definition["States"]["H"] = {"Type": "Pass", "End": True}
    assert run(definition, {"x": 1}).output == {"x": 1, "e": {"Error": "Branch.Error", "Cause": "b2"}}


def test_parallel_retry_reruns_branches():
    calls = []

    def flaky(p, c):
        calls.append(1)
        if len(calls) == 1:
            raise TaskFailed("Flaky")
        return "ok"

    task_branch = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": FN, "End": True}}}
    state = {"Type": "Parallel", "Branches": [task_branch], "Retry": [{"ErrorEquals": ["Flaky"]}]}
    assert run(one(state), {}, {FN: flaky}).output == ["ok"]


# -- Map ------------------------------------------------------------------------------
def processor(**config):
    return {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": FN, "End": True}}, **config}


def test_map_items_path_item_selector_and_result_path():
    state = {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemSelector": {"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value", "tag.$": "$.tag"},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **processor()},
        "ResultPath": "$.out",
    }
    ex = run(one(state), {"items": ["a", "b"], "tag": "t"}, {FN: lambda p, c: p})
    assert ex.output["out"] == [{"index": 0, "value": "a", "tag": "t"}, {"index": 1, "value": "b", "tag": "t"}]
    types = [e["type"] for e in ex.history]
    assert types.count("MapIterationStarted") == 2 and types.count("MapIterationSucceeded") == 2
    started = next(e for e in ex.history if e["type"] == "MapStateStarted")
    assert started["mapStateStartedEventDetails"] == {"length": 2}


def test_map_legacy_iterator_and_parameters():
    state = {"Type": "Map", "Iterator": processor(), "Parameters": {"v.$": "$$.Map.Item.Value"}}
    assert run(one(state), [1, 2, 3], {FN: lambda p, c: p["v"] * 10}).output == [10, 20, 30]


def test_map_distributed_mode_runs_locally_and_empty_input():
    state = {"Type": "Map", "ItemProcessor": processor(ProcessorConfig={"Mode": "DISTRIBUTED"})}
    assert run(one(state), [1], {FN: lambda p, c: p + 1}).output == [2]
    assert run(one(state), [], {FN: lambda p, c: p}).output == []


def test_map_max_concurrency_limits_parallelism():
    lock, active, peak = threading.Lock(), [0], [0]

    def work(p, c):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return p

    state = {"Type": "Map", "MaxConcurrency": 2, "ItemProcessor": processor()}
    ex = run(one(state), list(range(8)), {FN: work})
    assert ex.output == list(range(8)) and peak[0] == 2


def test_map_failure_without_tolerance_fails_with_item_error():
    def work(p, c):
        if p == 2:
            raise TaskFailed("Item.Bad", "item 2")
        return p

    ex = run(one({"Type": "Map", "ItemProcessor": processor()}), [1, 2, 3], {FN: work})
    assert (ex.error, ex.cause) == ("Item.Bad", "item 2")
    assert "MapIterationFailed" in [e["type"] for e in ex.history]


def odd_fails(p, c):
    if p % 2:
        raise TaskFailed("Odd", str(p))
    return p


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        ({"ToleratedFailurePercentage": 50}, "SUCCEEDED"),  # 2 of 4 = 50% is tolerated
        ({"ToleratedFailurePercentage": 49}, "FAILED"),
        ({"ToleratedFailureCount": 2}, "SUCCEEDED"),
        ({"ToleratedFailureCount": 1}, "FAILED"),
    ],
)
def test_map_tolerated_failures(tolerance, status):
    state = {"Type": "Map", "ItemProcessor": processor(), **tolerance}
    ex = run(one(state), [1, 2, 3, 4], {FN: odd_fails})
    assert ex.status == status
    if status == "FAILED":
        assert ex.error == "States.ExceedToleratedFailureThreshold"
    else:
        assert ex.output == [{"Error": "Odd", "Cause": "1"}, 2, {"Error": "Odd", "Cause": "3"}, 4]


def test_map_items_path_must_be_array():
    assert run(one({"Type": "Map", "ItemProcessor": processor()}), {"a": 1}).error == "States.Runtime"
