"""Intrinsic functions, with the examples of the AWS "Intrinsic functions" page."""

import base64
import hashlib
import uuid

import pytest

from mlops.twin.stepfunctions.asl import StatesError, intrinsics

NUMBERS = list(range(1, 10))


def ev(expression, data=None, context=None):
    return intrinsics.evaluate(expression, data or {}, context)


def test_format_doc_example():
    assert ev("States.Format('Hello, my name is {}.', $.name)", {"name": "Arnav"}) == "Hello, my name is Arnav."


def test_format_renders_json_scalars():
    assert ev("States.Format('{} {} {} {}', 1, 2.5, true, null)") == "1 2.5 true null"


def test_format_escapes():
    assert ev(r"States.Format('it\'s \{literal\} and {} \\ ok', 'x')") == "it's {literal} and x \\ ok"


def test_format_placeholder_count_mismatch_fails():
    with pytest.raises(StatesError) as info:
        ev("States.Format('{} {}', 'a')")
    assert info.value.error == "States.IntrinsicFailure"


def test_format_template_from_path():
    assert ev("States.Format($.t, 'x')", {"t": "<{}>"}) == "<x>"


def test_string_to_json_doc_example():
    assert ev("States.StringToJson($.escapedJsonString)", {"escapedJsonString": '{"foo": "bar"}'}) == {"foo": "bar"}


def test_json_to_string_doc_example():
    assert ev("States.JsonToString($.unescapedJson)", {"unescapedJson": {"foo": "bar"}}) == '{"foo":"bar"}'


def test_array_doc_example():
    data = {"someJson": {"random": "abcdefg"}}
    assert ev("States.Array('Foo', 2020, $.someJson, null)", data) == ["Foo", 2020, {"random": "abcdefg"}, None]


def test_array_partition_doc_example():
    assert ev("States.ArrayPartition($.inputArray, 4)", {"inputArray": NUMBERS}) == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]


def test_array_contains_doc_example():
    assert ev("States.ArrayContains($.inputArray, $.lookingFor)", {"inputArray": NUMBERS, "lookingFor": 5}) is True
    assert ev("States.ArrayContains($.inputArray, 'x')", {"inputArray": NUMBERS}) is False


def test_array_range_doc_example():
    assert ev("States.ArrayRange(1, 9, 2)") == [1, 3, 5, 7, 9]
    assert ev("States.ArrayRange(5, 1, -2)") == [5, 3, 1]


def test_array_range_limit():
    with pytest.raises(StatesError):
        ev("States.ArrayRange(1, 2000, 1)")


def test_array_get_item_and_length_doc_examples():
    data = {"inputArray": NUMBERS, "index": 5}
    assert ev("States.ArrayGetItem($.inputArray, $.index)", data) == 6
    assert ev("States.ArrayLength($.inputArray)", data) == 9


def test_array_unique_doc_example():
    assert ev("States.ArrayUnique($.inputArray)", {"inputArray": [1, 2, 3, 3, 3, 3, 3, 3, 4]}) == [1, 2, 3, 4]


def test_base64_doc_examples():
    assert ev("States.Base64Encode($.input)", {"input": "Data to encode"}) == "RGF0YSB0byBlbmNvZGU="
    assert ev("States.Base64Decode($.base64)", {"base64": "RGF0YSB0byBlbmNvZGU="}) == "Data to encode"


def test_base64_decode_invalid_fails():
    with pytest.raises(StatesError):
        ev("States.Base64Decode('***')")


@pytest.mark.parametrize(
    ("algorithm", "name"),
    [("MD5", "md5"), ("SHA-1", "sha1"), ("SHA-256", "sha256"), ("SHA-384", "sha384"), ("SHA-512", "sha512")],
)
def test_hash(algorithm, name):
    expected = hashlib.new(name, b"input data").hexdigest()
    assert ev("States.Hash($.Data, $.Algorithm)", {"Data": "input data", "Algorithm": algorithm}) == expected


def test_hash_known_sha1_value():
    assert ev("States.Hash('abc', 'SHA-1')") == "a9993e364706816aba3e25717850c26c9cd0d89d"


def test_json_merge_doc_example_is_shallow():
    data = {"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}}
    assert ev("States.JsonMerge($.json1, $.json2, false)", data) == {"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3}


def test_math_random_range_and_seed():
    for _ in range(20):
        assert 1 <= ev("States.MathRandom(1, 999)") < 999
    assert ev("States.MathRandom(1, 999, 7)") == ev("States.MathRandom(1, 999, 7)")


def test_math_add_doc_example():
    assert ev("States.MathAdd($.value1, $.step)", {"value1": 111, "step": -1}) == 110


def test_string_split_doc_examples():
    assert ev("States.StringSplit($.inputString, $.splitter)", {"inputString": "1,2,3,4,5", "splitter": ","}) == [
        "1", "2", "3", "4", "5",
    ]  # fmt: skip
    data = {"inputString": "This.is+a,test=string", "splitter": ".+,="}
    assert ev("States.StringSplit($.inputString, $.splitter)", data) == ["This", "is", "a", "test", "string"]


def test_uuid_is_v4():
    assert uuid.UUID(ev("States.UUID()")).version == 4


def test_nested_calls_and_context_paths():
    expression = "States.Format('{}:{}', States.ArrayLength(States.Array(1, 2, 3)), $$.Execution.Name)"
    assert ev(expression, {}, {"Execution": {"Name": "e1"}}) == "3:e1"


def test_path_arguments_with_brackets_and_commas_in_quotes():
    assert ev("States.Array($['a,b'], $.l[0])", {"a,b": 1, "l": [2]}) == [1, 2]


@pytest.mark.parametrize(
    "bad",
    [
        "States.Nope()",
        "States.Format('x'",
        "States.Array(1,,2)",
        "States.Format('\\q')",
        "States.ArrayLength()",
        "Format()",
    ],
)
def test_parse_errors(bad):
    with pytest.raises(intrinsics.IntrinsicSyntaxError):
        intrinsics.parse(bad)


def test_type_error_and_missing_path_are_intrinsic_failures():
    for expression, data in [("States.ArrayLength($.s)", {"s": "str"}), ("States.ArrayLength($.missing)", {})]:
        with pytest.raises(StatesError) as info:
            ev(expression, data)
        assert info.value.error == "States.IntrinsicFailure"


def test_base64_roundtrip_unicode():
    text = "héllo ✓"
    encoded = ev("States.Base64Encode($.t)", {"t": text})
    assert encoded == base64.b64encode(text.encode()).decode()
    assert ev("States.Base64Decode($.e)", {"e": encoded}) == text


# -- "Step Functions will round it off to the nearest integer" (AWS intrinsic functions page) --
def test_math_add_rounds_non_integer_arguments():
    assert ev("States.MathAdd(1.2, 2.7)") == 4
    assert ev("States.MathAdd($.a, $.b)", {"a": 110.5, "b": -1}) == 110  # half up: 111 - 1
    assert ev("States.MathAdd(-2.5, 0)") == -2  # half up, as Java's Math.round
    assert isinstance(ev("States.MathAdd(1.0, 1.0)"), int)


def test_math_add_arguments_are_32_bit_integers():
    with pytest.raises(StatesError):
        ev("States.MathAdd(2147483648, 1)")
    assert ev("States.MathAdd(2147483647, -1)") == 2147483646


def test_array_range_rounds_every_argument():
    assert ev("States.ArrayRange(0.6, 4.4, 1.5)") == [1, 3]
    with pytest.raises(StatesError):
        ev("States.ArrayRange(1, 5, 0.2)")  # rounds to a zero step


def test_array_partition_rounds_the_chunk_size():
    assert ev("States.ArrayPartition($.a, 1.6)", {"a": [1, 2, 3]}) == [[1, 2], [3]]


def test_math_random_rounds_its_bounds():
    for _ in range(20):
        assert ev("States.MathRandom(0.6, 2.4)") == 1


def test_array_get_item_index_is_not_rounded():
    # Rounding is documented for the functions above only.
    with pytest.raises(StatesError):
        ev("States.ArrayGetItem($.a, 0.6)", {"a": [1, 2]})
