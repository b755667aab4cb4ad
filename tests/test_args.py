from pathlib import Path

import pytest

from mmdata.core.args import InputPath, check_args


class Example:
    def __init__(
        self,
        *,
        size: int,
        ratio: float = 1.0,
        name: str | None = None,
        files: list[str] | None = None,
        src: InputPath | None = None,
        out: Path | None = None,
        flag: bool = False,
    ) -> None:
        pass


def test_converts_and_resolves(tmp_path):
    (tmp_path / "in.json").write_text("{}")
    args = check_args(Example, {"size": 3, "ratio": 2, "src": "in.json", "out": "o"}, tmp_path)
    assert args["ratio"] == 2.0 and isinstance(args["ratio"], float)
    assert args["src"] == str(tmp_path / "in.json")
    assert args["out"] == str(tmp_path / "o")


def test_uris_are_left_alone(tmp_path):
    args = check_args(Example, {"size": 1, "src": "s3://bucket/x.json"}, tmp_path)
    assert args["src"] == "s3://bucket/x.json"


def test_every_problem_is_listed_with_the_accepted_arguments(tmp_path):
    with pytest.raises(ValueError) as info:
        check_args(
            Example, {"ratio": "big", "colour": 1, "flag": "yes", "src": "nope.json"}, tmp_path
        )
    message = str(info.value)
    for part in (
        "missing required argument 'size'",
        "unknown argument 'colour'",
        "'ratio' must be a number",
        "'flag' must be true or false",
        "nope.json, which does not exist",
        "accepted: size: int",
    ):
        assert part in message


def test_bool_is_not_an_int():
    with pytest.raises(ValueError, match="must be an integer"):
        check_args(Example, {"size": True}, None)
