"""JSONPath, ResultPath and payload templates (ASL spec / AWS input-output processing)."""

import pytest

from mlops.twin.stepfunctions.asl import StatesError, paths, payload

DATA = {
    "store": {"book": [{"title": "A", "price": 8}, {"title": "B", "price": 12}, {"title": "C", "price": 30}]},
    "a b": 1,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DATA),
        ("$.store.book[0].title", "A"),
        ("$.store.book[-1].title", "C"),
        ("$['a b']", 1),
        ("$.store['book'][1]['price']", 12),
        ("$.store.book[*].title", ["A", "B", "C"]),
        ("$.store.book[0:2].price", [8, 12]),
        ("$..price", [8, 12, 30]),
        ("$.store.book[?(@.price < 10)].title", ["A"]),
        ("$.store.book[?(@.title == 'B')].price", [12]),
        ("$.store.*", [DATA["store"]["book"]]),
    ],
)
def test_get(path, expected):
    assert paths.get(DATA, path) == expected


def test_context_path_reads_the_context_object():
    assert paths.get({}, "$$.Execution.Name", {"Execution": {"Name": "run-1"}}) == "run-1"


def test_missing_definite_path_raises():
    with pytest.raises(paths.PathNotFound):
        paths.get(DATA, "$.store.pen")
    with pytest.raises(paths.PathNotFound):
        paths.get(DATA, "$.store.book[7]")


def test_wildcard_without_matches_is_empty_list():
    assert paths.get(DATA, "$.store.book[?(@.price > 100)]") == []


@pytest.mark.parametrize("bad", ["a.b", "$.", "$[", "$.a[x]", "$['a"])
def test_syntax_errors(bad):
    assert paths.validate(bad) is not None


def test_reference_path_rejects_wildcards():
    assert paths.validate("$.a[*]", reference=True)
    assert paths.validate("$.a.b[0]", reference=True) is None


def test_assign_creates_nested_objects_and_copies():
    original = {"x": 1}
    assert paths.assign(original, "$.a.b", 2) == {"x": 1, "a": {"b": 2}}
    assert original == {"x": 1}


def test_assign_root_replaces_and_index_sets():
    assert paths.assign({"x": 1}, "$", "r") == "r"
    assert paths.assign({"l": [1, 2]}, "$.l[1]", 9) == {"l": [1, 9]}


def test_assign_into_non_object_is_result_path_match_failure():
    with pytest.raises(StatesError) as info:
        paths.assign("just a string", "$.a", 1)
    assert info.value.error == "States.ResultPathMatchFailure"


def test_payload_template_paths_intrinsics_and_nesting():
    template = {
        "static": "v",
        "flag.$": "$.on",
        "nested": {"list": [{"n.$": "$.n"}, 3], "name.$": "$$.Execution.Name"},
        "joined.$": "States.Format('{}-{}', $.n, $.on)",
    }
    out = payload.render(template, {"on": True, "n": 7}, {"Execution": {"Name": "e"}})
    assert out == {"static": "v", "flag": True, "nested": {"list": [{"n": 7}, 3], "name": "e"}, "joined": "7-true"}


def test_payload_missing_path_is_parameter_path_failure():
    with pytest.raises(StatesError) as info:
        payload.render({"x.$": "$.nope"}, {}, {})
    assert info.value.error == "States.ParameterPathFailure"
    assert "'x.$'" in info.value.cause


# -- unions (JSONPath "[a,b]"): in Paths, not in Reference Paths -----------------------------
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.store.book[0,2].title", ["A", "C"]),
        ("$.store.book[0, -1].price", [8, 30]),
        ("$.store.book[1]['title','price']", ["B", 12]),
        ("$['a b',\"store\"]", [1, DATA["store"]]),
        ("$.store.book[0,7].title", ["A"]),
    ],
)
def test_unions(path, expected):
    assert paths.get(DATA, path) == expected


def test_union_is_not_a_reference_path():
    assert paths.validate("$.a[0,1]") is None
    assert paths.validate("$.a[0,1]", reference=True)
    assert paths.validate("$['a,b']", reference=True) is None  # a comma inside a quoted name


@pytest.mark.parametrize("bad", ["$.a[0,x]", "$.a[0,", "$.a[,1]"])
def test_bad_unions(bad):
    assert paths.validate(bad) is not None


def test_union_in_input_path_and_parameters():
    from mlops.twin.stepfunctions.asl import AslEngine

    seen = []
    definition = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
                "InputPath": "$.v[0,2]",
                "Parameters": {"picked.$": "$[0,1]", "len.$": "States.ArrayLength($[0,1])"},
                "End": True,
            }
        },
    }
    engine = AslEngine(lambda r, p, c: seen.append(p) or p, time_scale=0.001)
    ex = engine.run("arn:aws:states:us-east-1:123456789012:stateMachine:M", definition, {"v": [10, 20, 30]}, "u")
    assert ex.status == "SUCCEEDED", ex.cause
    assert seen == [{"picked": [10, 30], "len": 2}]
