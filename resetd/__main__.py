"""``python -m resetd`` — the same as the ``resetd`` console script."""

from .cli import main

raise SystemExit(main())
