"""`python -m tformer.cli ...` (and `torchrun ... -m tformer.cli ...`): the `tformer` command."""

import sys

from tformer.cli import main

if __name__ == "__main__":
    sys.exit(main())
