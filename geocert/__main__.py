"""``python -m geocert`` is the ``geocert`` command."""

import sys

from geocert.cli import main

sys.exit(main())
