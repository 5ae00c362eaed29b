"""Output files checked before the load starts, so that a long run never ends unable to write its results."""

import os

from ..model.errors import UsageError

# option dest -> (the option as typed, what its value names)
OUTPUT_OPTIONS = {"report": ("--report", "file"), "html_file": ("--html", "file"),
                  "json_file": ("--json-file", "prefix"), "csv_prefix": ("--csv", "prefix"), "plot": ("--plot", "file")}


def unwritable_reason(path: str, kind: str = "file") -> str | None:
    """Why `path` cannot be written (a prefix: why files starting with it cannot be created); None when it can."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if kind == "file" and os.path.isdir(path):
        return "it is a directory"
    if kind == "file" and os.path.exists(path):
        return None if os.access(path, os.W_OK) else "the file is not writable"
    if not os.path.isdir(directory):
        return f"no directory {directory}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory} is not writable"
    return None


def check_path(option: str, path: str, kind: str = "file") -> None:
    if not path:
        return
    reason = unwritable_reason(str(path), kind)
    if reason:
        raise UsageError(f"{option} {path}: cannot write there: {reason}")


def check_output_paths(options) -> None:
    """One UsageError line for the first output option (--report, --html, --csv, --plot) that cannot be written."""
    for dest, (option, kind) in OUTPUT_OPTIONS.items():
        check_path(option, getattr(options, dest, "") or "", kind)
