"""`python -m loan_default.sweeps <sweep dir>`: rank every job of a multirun and write the summary."""

import sys

from loan_default.sweeps.summary import main

if __name__ == "__main__":
    sys.exit(main())
