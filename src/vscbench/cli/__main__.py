"""``python -m vscbench.cli``."""

from vscbench.cli.main import main

raise SystemExit(main())
