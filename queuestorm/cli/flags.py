"""The subcommands' flags that are run options, made from the option table: the same type, bounds, default and
environment variable as the Locust option of that name."""

from ..model import settings
from ..model.options import BY_NAME

_TABLE_DEFAULT = object()


def add(parser, name: str, help: str, *, flag: str | None = None, dest: str | None = None,
        also_env: str | None = None, default=_TABLE_DEFAULT, shown: str | None = None) -> None:
    """`--NAME` (or `flag`) on `parser`. Its value: the command line's, else its environment variable's (else
    `also_env`'s), else the table's default (or this command's `default`). `shown`: the default as the help says it."""
    option = BY_NAME[name]
    envs = [option.env_var] + ([also_env] if also_env else [])
    fallback = option.default if default is _TABLE_DEFAULT else default
    value = next((settings.env(env) for env in envs if settings.env(env) is not None), fallback)
    if shown is None and fallback not in ("", None) and not option.flag:
        shown = f"{fallback:g}" if isinstance(fallback, float) else str(fallback)
    kwargs = {"action": "store_true"} if option.flag else {"type": option.convert, "choices": option.choices}
    parser.add_argument(flag or option.flag_name, dest=dest or name, default=value,
                        help=f"{help} [{', then '.join(envs)}{'; default: ' + shown if shown else ''}]",
                        **{k: v for k, v in kwargs.items() if v is not None})
