"""`python -m churnguard.cli`."""

from churnguard.cli import main

raise SystemExit(main())
