"""Allow ``python -m enhance_hmi``."""

from enhance_hmi.cli import main

raise SystemExit(main())
