from vipdrain.preserve.nft import main

raise SystemExit(main())
