"""Command-line values (cli.md section 0.6): sizes, durations, times, KEY=VALUE, JSON
arguments, and the error style `paglets <command>: --option: <message>` with exit 2."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paglets.cli.main import run
from paglets.cli.values import (
    ValueFormatError,
    parse_choice,
    parse_duration,
    parse_int,
    parse_json_argument,
    parse_key_value,
    parse_size,
    parse_time,
)

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4

# -- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512", 512),
        ("512B", 512),
        ("512b", 512),
        ("0", 0),
        ("10K", 10 * KiB),
        ("10KB", 10 * KiB),
        ("10KiB", 10 * KiB),
        ("10kib", 10 * KiB),
        ("10Ki", 10 * KiB),
        ("2G", 2 * GiB),
        ("2GB", 2 * GiB),
        ("2gb", 2 * GiB),
        ("2 GiB", 2 * GiB),
        (" 2 GiB ", 2 * GiB),
        ("1.5G", GiB + GiB // 2),
        ("1.5GiB", GiB + GiB // 2),
        ("256M", 256 * MiB),
        ("16MB", 16 * MiB),
        ("1T", TiB),
        (".5K", 512),
    ],
)
def test_sizes_are_powers_of_1024(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["none", "None", "UNLIMITED", "unlimited"])
def test_no_limit_only_where_allowed(text: str) -> None:
    assert parse_size(text, allow_none=True) is None
    with pytest.raises(ValueFormatError, match="cannot be turned off"):
        parse_size(text)


@pytest.mark.parametrize("text", ["2XB", "", "G", "-1", "1.2.3G", "10 K B", "1e3", "12Q", "1.5"])
def test_bad_sizes_say_what_was_wrong(text: str) -> None:
    with pytest.raises(ValueFormatError) as caught:
        parse_size(text, allow_none=True)
    message = str(caught.value)
    assert f'"{text}"' in message
    assert "examples: 512M, 2GB, 1.5GiB" in message


def test_the_spec_example_message() -> None:
    with pytest.raises(ValueFormatError) as caught:
        parse_size("2XB", allow_none=True)
    assert str(caught.value) == 'cannot read "2XB" as a size (examples: 512M, 2GB, 1.5GiB, none)'


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from(["", "K", "M", "G", "T"]))
def test_whole_numbers_with_any_unit_round_trip(n: int, unit: str) -> None:
    multiplier = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}[unit]
    for spelling in (unit, unit + "B", unit + "iB" if unit else "B", unit.lower()):
        assert parse_size(f"{n}{spelling}") == n * multiplier


# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", 30.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("30s", 30.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("10S", 10.0),
        ("2H", 7200.0),
        ("1s500ms", 1.5),
    ],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["5x", "", "m", "-5s", "1h30", "h1", "5 minutes", "1e3s", "abc"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueFormatError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f'cannot read "{text}" as a duration (examples: 30, 500ms, 5m, 1h30m)'
    )


# -- times -------------------------------------------------------------------------------


def test_times_are_durations_ago_iso_or_epoch() -> None:
    now = 2_000_000_000.0
    assert parse_time("10m", now=now) == now - 600
    assert parse_time("30", now=now) == now - 30
    assert parse_time("1714564800", now=now) == 1714564800.0
    assert parse_time("2024-05-01T12:00:00Z", now=now) == 1714564800.0
    assert parse_time("2024-05-01T14:00:00+02:00", now=now) == 1714564800.0
    with pytest.raises(ValueFormatError, match='cannot read "yesterday" as a time'):
        parse_time("yesterday", now=now)


# -- KEY=VALUE, numbers, choices, JSON --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python=3.12", ("python", "3.12")),
        ("a=b=c", ("a", "b=c")),
        ("empty=", ("empty", "")),
        (" spaced =x", ("spaced", "x")),
    ],
)
def test_key_value(text: str, expected: tuple[str, str]) -> None:
    assert parse_key_value(text) == expected


def test_key_value_errors() -> None:
    with pytest.raises(ValueFormatError, match='there is no "="'):
        parse_key_value("python")
    with pytest.raises(ValueFormatError, match="key before"):
        parse_key_value("=3.12")


def test_int_and_choice() -> None:
    assert parse_int("8765", low=0, high=65535, what="a port") == 8765
    with pytest.raises(ValueFormatError, match='cannot read "x" as a port'):
        parse_int("x", low=0, high=65535, what="a port")
    with pytest.raises(ValueFormatError, match="must be 0 to 65535, got 70000"):
        parse_int("70000", low=0, high=65535, what="a port")
    assert parse_choice("FULL", ("normal", "full")) == "full"
    with pytest.raises(ValueFormatError, match="one of: normal, full"):
        parse_choice("fast", ("normal", "full"))


def test_json_argument_inline_file_and_stdin(tmp_path: Path) -> None:
    assert parse_json_argument('{"n": 1}') == {"n": 1}
    path = tmp_path / "state.json"
    path.write_text(json.dumps([1, 2]))
    assert parse_json_argument(f"@{path}") == [1, 2]
    assert parse_json_argument("-", stdin=io.StringIO('"x"')) == "x"
    with pytest.raises(ValueFormatError, match="cannot read the argument as JSON"):
        parse_json_argument("{n: 1}")
    with pytest.raises(ValueFormatError, match="cannot read JSON from"):
        parse_json_argument(f"@{tmp_path / 'missing.json'}")


# -- the error line through the real CLI ---------------------------------------------------


def test_bad_value_is_one_line_with_the_option_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(["host", "--name", "alpha", "--artifact-max-size", "2XB"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == (
        'paglets host: --artifact-max-size: cannot read "2XB" as a size '
        "(examples: 512M, 2GB, 1.5GiB, none)\n"
    )


def test_missing_equals_in_property_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["host", "--name", "alpha", "--property", "python"]) == 2
    assert capsys.readouterr().err.startswith('paglets host: --property: cannot read "python"')


def test_unknown_command_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paglets: No such command 'no-such-command'")
    assert "Traceback" not in err
