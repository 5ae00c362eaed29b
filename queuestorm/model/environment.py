"""What queuestorm keeps on a Locust Environment (locust/state.py's State) sits under one attribute, reached only
through these two functions: no other code sets or reads attributes of Locust's objects."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..locust.state import State

ATTRIBUTE = "queuestorm"


def state_of(environment) -> "State | None":
    """The State of this process's Environment; None before queuestorm's init listener ran."""
    return getattr(environment, ATTRIBUTE, None)


def attach(environment, state: "State") -> None:
    setattr(environment, ATTRIBUTE, state)
