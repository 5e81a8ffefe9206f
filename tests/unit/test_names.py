import pytest

from edgeq.errors import InvalidArgument
from edgeq.names import check_model_name, check_version


@pytest.mark.parametrize("name", ["vit", "vit-s.14_int8", "A1", "x" * 64])
def test_good_names_pass(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "..", ".", "a/b", "/abs", "a\\b", "x" * 65, "-lead", "a..b", "sp ace", "ü"])
def test_hostile_names_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(InvalidArgument, match="model name"):
        check_model_name(name)


@pytest.mark.parametrize("text,number", [("1", 1), (7, 7), ("42", 42)])
def test_versions(text: object, number: int) -> None:
    assert check_version(text) == number  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "../1", "", str(2**31)])
def test_bad_versions(text: str) -> None:
    with pytest.raises(InvalidArgument):
        check_version(text)
