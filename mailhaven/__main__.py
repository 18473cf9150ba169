from mailhaven.cli import main

raise SystemExit(main())
