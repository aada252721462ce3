from sendlearn.cli import main

raise SystemExit(main())
