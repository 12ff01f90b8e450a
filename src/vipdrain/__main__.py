from vipdrain.warm.client import main

raise SystemExit(main())
