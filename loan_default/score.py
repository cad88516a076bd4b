"""Entry point `python -m loan_default.score <origination file or folder> --bundle <path> --out scores.csv`."""

import sys

from loan_default.batch.score import main

if __name__ == "__main__":
    sys.exit(main())
