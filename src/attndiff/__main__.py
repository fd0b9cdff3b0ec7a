from attndiff.cli import main

raise SystemExit(main())
