from sentiment.cli import main

raise SystemExit(main())
