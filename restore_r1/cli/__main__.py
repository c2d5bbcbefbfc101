"""``python -m restore_r1.cli``: the same as the ``restore-r1`` command."""

import sys

from restore_r1.cli import main

sys.exit(main())
