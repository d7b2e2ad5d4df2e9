"""``python -m repflow_core.data.synthetic``: write the synthetic dataset (see :func:`.dataset.main`)."""

from .dataset import main

raise SystemExit(main())
