"""Argument types that carry their option's bounds: every numeric option of every command is declared with one, so
`inf`, `nan`, a negative count or a port past 65535 is refused where the option is declared (command line,
environment variable, scenario file and web UI form alike)."""

import argparse
import math
from fractions import Fraction

LARGEST = 1e9  # past any count, rate or number of seconds a test means; also keeps ms conversions in range
PORT_HIGH = 65535


def bounded(kind=float, *, low: float | None = 0, high: float | None = LARGEST, above: float | None = None,
            finite: bool = True):
    """A type for add_argument(type=...): `kind` (int or float) within [low, high] (`above`: strictly greater)."""

    def convert(text):
        if isinstance(text, bool):
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
        try:
            number = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if finite and not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if kind is int and not number.is_integer():
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}")
        if above is not None and not number > above:
            raise argparse.ArgumentTypeError(f"must be above {above:g}, got {text!r}")
        if low is not None and number < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text!r}")
        if high is not None and number > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text!r}")
        return int(number) if kind is int else number

    convert.__name__ = kind.__name__  # argparse names the type in some of its own messages
    convert.bounds = (low, high)
    return convert


def port(text):
    """A TCP port to listen on; 0 = any free one."""
    return bounded(int, low=0, high=PORT_HIGH)(text)


def optional(convert):
    """`convert`, or None for an empty value."""
    def optional(text):
        return None if text in (None, "", "None") else convert(text)
    optional.__name__ = convert.__name__
    optional.bounds = convert.bounds
    return optional


def ms_range(text: str) -> tuple[float, float]:
    """'MIN-MAX' or 'N' milliseconds."""
    low, sep, high = str(text).partition("-")
    try:
        bounds = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX milliseconds (like 1-5), got {text!r}") from None
    if not all(map(math.isfinite, bounds)) or bounds[0] < 0 or bounds[1] < bounds[0] or bounds[1] > LARGEST:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX milliseconds, got {text!r}")
    return bounds


def ratio(text) -> Fraction:
    try:
        value = Fraction(str(text)).limit_denominator(10**6)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def as_text(parse):
    """`parse` as a check only: the value is kept as text, as Locust hands custom options to its workers."""
    def check(text):
        parse(text)
        return str(text)
    return check


def is_bounded(type_) -> bool:
    return hasattr(type_, "bounds") or type_ is port


class OneLineErrors:
    """argparse's error() prints the whole usage before the message: a mistake here is one line, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class ArgumentParser(OneLineErrors, argparse.ArgumentParser):
    pass


def one_line_errors(parser) -> None:
    """Make an existing parser (Locust's) report mistakes in one line."""
    parser.error = lambda message: parser.exit(2, f"{parser.prog}: error: {message}\n")
