"""Entry point: python3 -m hubctl ..."""

import sys

from hubctl.cli import main

sys.exit(main())
