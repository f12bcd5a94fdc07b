"""`python -m mailhouse` runs the command line."""

from mailhouse.cli.main import main

raise SystemExit(main())
