from labrouter.cli import main

raise SystemExit(main())
