"""`python -m training fit|reproduce ...` (see training/cli.py)."""

from training.cli import main

raise SystemExit(main())
