"""``python -m regd`` is the ``regd`` command."""

import sys

from regd.cli import main

sys.exit(main())
