"""`python -m loan_default.azure submit|download`."""

import sys

from loan_default.azure.jobs import main

if __name__ == "__main__":
    sys.exit(main())
