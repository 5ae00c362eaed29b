"""The loss checker as a plain script: `python workers/check.py --run-id ID --ledger-url URL`"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from queuestorm.cli import main  # noqa: E402

sys.exit(main(["check", *sys.argv[1:]]))
