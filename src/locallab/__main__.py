"""`python -m locallab` runs the same command line as `locallab`."""

from locallab.cli.main import main

raise SystemExit(main())
