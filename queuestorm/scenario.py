"""Reading YAML files that define a run. For now: the `faults:` list (a bare list, or a scenario's `faults:` key)."""

import yaml

from .errors import UsageError
from .faults import FaultSpec, parse_faults


def read_yaml(path: str):
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise UsageError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None


def load_faults(path: str) -> list[FaultSpec]:
    doc = read_yaml(path)
    items = doc.get("faults") if isinstance(doc, dict) else doc
    return parse_faults(items, path)
