"""Entry point `python -m loan_default.monitor <origination file or folder, or scores.csv> --bundle <path>`."""

import sys

from loan_default.batch.monitor import main

if __name__ == "__main__":
    sys.exit(main())
