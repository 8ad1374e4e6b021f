from tunnelgate.cli import main

raise SystemExit(main())
