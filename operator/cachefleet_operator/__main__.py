"""`python -m cachefleet_operator` = `cachefleet-operator`."""

import sys

from cachefleet_operator.cli import main

sys.exit(main())
