"""Surface: ``python -m gradcheck`` is the ``gradcheck`` command."""

from gradcheck.cli import main

raise SystemExit(main())
