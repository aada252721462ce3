from sendlearn.cli.main import main

raise SystemExit(main())
