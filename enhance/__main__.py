"""Allow ``python -m enhance``."""

from enhance.cli import main

raise SystemExit(main())
