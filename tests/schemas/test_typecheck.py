"""The one checker of config values against type annotations (schemas/typecheck.py), and its use on every
step constructor (filters/registry.py)."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Literal

import pytest

from vlcurate.filters.chain import build_chain
from vlcurate.filters.registry import parameter_types, step_class, step_names
from vlcurate.schemas.config import CleanConfig, SourceConfig
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.typecheck import check_value, describe, expected, fits


@pytest.mark.parametrize(
    ("hint", "good", "bad"),
    [
        (int, [0, -3, 10**12], [True, 2.0, "2", None]),  # a bool is not an integer
        (float, [0.5, 3, -1], [True, "3.0", None]),  # an integer is a fine number
        (bool, [True, False], [1, 0, "yes"]),
        (str, ["x", ""], [1, None, ["x"]]),
        (type(None), [None], [0, ""]),
        (int | None, [None, 4], [4.5, "4"]),
        (
            float | dict[str, float] | None,
            [0.3, {"en": 0.3, "default": 1}, None],
            ["high", {"en": "x"}, [0.3]],
        ),
        (list[str], [[], ["a", "b"], ("a",)], ["a", [1], None]),  # a bare string is not a list
        (dict[str, int], [{}, {"a": 1}], [{"a": "1"}, {1: 1}, []]),
        (Literal["bf16", "fp8"], ["bf16", "fp8"], ["fp16", 1]),
        (Literal[1, 2], [1, 2], [True, 1.0]),
        (Any, [1, "x", None, [1]], []),  # unknown annotations take anything
        (tuple[int, ...], [[1, 2], (3,)], [["a"]]),
    ],
)
def test_fits(hint, good, bad):
    assert all(fits(hint, v) for v in good)
    assert not any(fits(hint, v) for v in bad)


@pytest.mark.parametrize(
    ("hint", "text"),
    [
        (int, "an integer"),
        (float | None, "a number or null"),
        (float | dict[str, float] | None, "a number, a mapping of strings to numbers, or null"),
        (list[str] | None, "a list of strings or null"),
        (list[bool], "a list of true/false values"),
        (Literal["a", "b"], "one of 'a', 'b'"),
    ],
)
def test_expected_names_the_type(hint, text):
    assert expected(hint) == text


def test_describe_quotes_the_given_value():
    assert [describe(v) for v in ("256", 3, 2.5, True, None, [1], {"a": 1})] == [
        "the string '256'",
        "the number 3",
        "the number 2.5",
        "true",
        "null",
        "the list [1]",
        "the mapping {'a': 1}",
    ]
    assert describe("x" * 100).endswith("...")


@pytest.mark.parametrize(
    ("hint", "value", "message"),
    [
        (int, "256", "w must be an integer, got the string '256' (write 256 without quotes)"),
        (float, "3.0", "w must be a number, got the string '3.0' (write 3.0 without quotes)"),
        (bool, "no", "w must be true or false, got the string 'no' (write false without quotes)"),
        (int, "two", "w must be an integer, got the string 'two'"),
        (
            list[str] | None,
            "en",
            "w must be a list of strings or null, got the string 'en' (a list: write [en])",
        ),
    ],
)
def test_check_value_names_the_fix(hint, value, message):
    with pytest.raises(ConfigError) as err:
        check_value(hint, value, "w")
    assert str(err.value) == message


@pytest.mark.parametrize("name", step_names())
def test_every_step_parameter_is_annotated(name):
    # The start-up check is only as good as the annotations: every parameter must have one it resolves.
    init = step_class(name).__init__
    if init is object.__init__:
        return
    hints = typing.get_type_hints(init)
    params = [p for p in inspect.signature(init).parameters if p != "self"]
    assert all(p in hints for p in params), name
    assert set(parameter_types(name)) == set(params)


def config_with(**kwargs) -> CleanConfig:
    return CleanConfig(sources=[SourceConfig(name="a", format="csv", paths=["x"])], **kwargs)


def test_values_that_fit_build_the_steps():
    steps = {
        "aspect_ratio": {"max_ratio": 2},  # an integer for a float
        "clip_filter": {"threshold": {"en": 0.3, "default": 0.25}},
        "language": {"allowed": ["en"], "candidates": None},
        "clip_score": {"decode_threads": None},
    }
    params = build_chain(config_with(steps=steps)).params()["a"]
    assert params["aspect_ratio"]["max_ratio"] == 2
    assert params["clip_filter"]["threshold"] == {"en": 0.3, "default": 0.25}


def test_a_wrong_type_fails_before_the_step_is_built(monkeypatch):
    built = []
    monkeypatch.setattr(step_class("min_side"), "__init__", _recording_init(built))
    with pytest.raises(ConfigError, match=r"steps\.min_side\.min_side must be an integer"):
        build_chain(config_with(steps={"min_side": {"min_side": "256"}}))
    assert built == []


def _recording_init(built: list):
    def __init__(self, min_side: int = 200) -> None:
        built.append(min_side)
        self.min_side = min_side

    return __init__
