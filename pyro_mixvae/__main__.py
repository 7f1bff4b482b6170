"""``python -m pyro_mixvae`` is the ``mixvae`` command."""
import sys

from .cli import main

sys.exit(main())
