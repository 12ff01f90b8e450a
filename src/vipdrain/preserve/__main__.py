"""`python -m vipdrain.preserve keep|cleanup ...` (see vipdrain.preserve.keeper)."""

from vipdrain.preserve.keeper import main

raise SystemExit(main())
