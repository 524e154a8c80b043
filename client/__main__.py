"""`python -m client ...` (= `sancodec ...`): see client/cli.py."""

from client.cli import main

raise SystemExit(main())
