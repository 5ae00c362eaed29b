"""queuestorm's Locust options, made from the option table: each also an environment variable, and shown in the web
UI's start form."""

from ..model.option_types import one_line_errors
from ..model.options import GROUPS, OPTIONS, PER_TEST, SECRET_OPTIONS

FIXED_NOTE = " [fixed at startup]"


def add_arguments(parser) -> None:
    first = len(parser._actions)
    groups = {}
    for option in OPTIONS:
        if option.group is None:
            target = parser
        else:
            if option.group not in groups:
                groups[option.group] = parser.add_argument_group(option.group, GROUPS[option.group])
            target = groups[option.group]
        kwargs = {"action": "store_true"} if option.flag else {"type": option.convert}
        if option.choices:
            kwargs["choices"] = option.choices
        target.add_argument(option.flag_name, env_var=option.env_var, default=option.default, help=option.help,
                            **{k: v for k, v in kwargs.items() if v is not None})
    _show_in_web_ui(parser._actions[first:])
    one_line_errors(parser)


def _show_in_web_ui(actions) -> None:
    """Arguments added to a group bypass Locust's add_argument, which marks what its start form shows."""
    in_config = {option.name for option in OPTIONS if option.in_config}
    for action in actions:
        if action.dest == "help" or hasattr(action, "include_in_web_ui"):
            continue
        action.include_in_web_ui = True
        action.is_secret = action.dest in SECRET_OPTIONS
        action.is_required = action.is_multiple = False
        if action.dest not in PER_TEST and action.dest in in_config and action.help:
            action.help += FIXED_NOTE
