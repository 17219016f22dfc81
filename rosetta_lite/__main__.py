from rosetta_lite.cli import main

raise SystemExit(main())
