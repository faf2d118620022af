"""Specification of the helpers constructors use to refuse bad options."""

from __future__ import annotations

import pytest

from eventrouter._options import each_item, refuse_bare_string, refusing
from eventrouter.errors import OptionError, OptionTypeError
from eventrouter.paths import parse_path
from eventrouter.processors import NameFilter, Redact, Sample
from eventrouter.processors.schema import SchemaValidator


@pytest.mark.parametrize("value", ["video.*", b"video.*"])
def test_a_bare_string_for_a_list_is_refused_naming_the_option(value: object) -> None:
    with pytest.raises(OptionTypeError, match=r"write allow=\[") as caught:
        refuse_bare_string("allow", value)
    assert caught.value.option == "allow"


@pytest.mark.parametrize("value", [None, ["video.*"], ("a", "b")])
def test_anything_but_a_string_passes_the_bare_string_check(value: object) -> None:
    refuse_bare_string("allow", value)


def test_each_item_locates_the_refused_item_by_its_index() -> None:
    with pytest.raises(OptionError) as caught:
        each_item("fields", ["data.a", "data..b", "data.c"], parse_path)
    assert (caught.value.option, caught.value.where) == ("fields", (1,))


def test_refusing_keeps_a_type_error_a_type_error() -> None:
    with pytest.raises(OptionTypeError) as caught, refusing("key", "x"):
        raise TypeError("not a string")
    assert (caught.value.option, caught.value.where, str(caught.value)) == (
        "key",
        ("x",),
        "not a string",
    )


def test_refusing_restates_an_inner_option_error_for_the_outer_option() -> None:
    with pytest.raises(OptionError) as caught, refusing("allow"):
        raise OptionError("patterns", "bad", where=(3,))
    assert (caught.value.option, caught.value.where) == ("allow", (3,))


@pytest.mark.parametrize(
    ("build", "option", "where"),
    [
        (lambda: NameFilter(allow=["video.*", "re:(video"]), "allow", (1,)),
        (lambda: NameFilter(block="video.*"), "block", ()),
        (lambda: Redact(fields=["data.a", "data..b"]), "fields", (1,)),
        (lambda: Sample(rate=5), "rate", ()),
        (lambda: Sample(rate=0.5, key="a..b"), "key", ()),
        (
            lambda: SchemaValidator(schemas={"video.*": {"type": "objekt"}}),
            "schemas",
            ("video.*", "type"),
        ),
    ],
    ids=["name_filter_pattern", "name_filter_bare", "redact_path", "rate", "key", "schema"],
)
def test_built_in_processors_name_the_option_they_refuse(
    build: object, option: str, where: tuple[object, ...]
) -> None:
    with pytest.raises(OptionError) as caught:
        build()  # type: ignore[operator]
    assert (caught.value.option, caught.value.where) == (option, where)
