"""The drain worker as a plain script: `python workers/drain.py --redis-url URL --queue Q ...`"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from queuestorm.cli import main  # noqa: E402

sys.exit(main(["drain", *sys.argv[1:]]))
