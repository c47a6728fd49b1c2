from namm_bench.cli import main

raise SystemExit(main())
