from xbml.cli import main

raise SystemExit(main())
