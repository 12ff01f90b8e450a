from vipdrain.cli import main

raise SystemExit(main())
