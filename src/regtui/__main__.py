"""``python -m regtui``: the same as the ``regtui`` command."""

import sys

from regtui.app import main

sys.exit(main())
