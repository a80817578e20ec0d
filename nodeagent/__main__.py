"""`python -m nodeagent`: the same as `nodemesh-agent`."""

import sys

from nodeagent.cli import main

sys.exit(main())
