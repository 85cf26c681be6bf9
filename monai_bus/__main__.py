from monai_bus.cli import main

raise SystemExit(main())
