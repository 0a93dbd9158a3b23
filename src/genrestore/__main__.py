"""``python -m genrestore``: the command line (:mod:`genrestore.cli`)."""

import sys

from genrestore.cli import main

sys.exit(main())
