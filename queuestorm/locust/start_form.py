"""Locust's start form, listed once per process (see derive_start_form_options_once)."""

import copy
import functools

from locust import argument_parser


def derive_start_form_options_once() -> None:
    """Locust lists the start form's options on every render of its page by building its whole parser again and
    parsing the command line again: most of a render's time with queuestorm's options (250 ms at p95 for `GET /` on a
    master of 500 workers). Neither changes within a process, so the list is derived once and copied per render (the
    copy is what mask_secrets edits)."""
    derive = argument_parser.ui_extra_args_dict
    if getattr(derive, "derived_once", False):
        return
    once = functools.cache(derive)

    @functools.wraps(derive)
    def copied(args=None):
        return copy.deepcopy(once()) if args is None else derive(args)

    copied.derived_once = True
    argument_parser.ui_extra_args_dict = copied
