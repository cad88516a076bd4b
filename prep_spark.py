"""Spark entry point of data preparation: `spark-submit prep_spark.py <raw folder> --out <table folder>`.

Azure ML runs it as a Spark job (azure_prep_spark.yml); Databricks and Synapse run the same file. Local mode:
`python prep_spark.py <raw> --out <table> --master local[2]`, or `python -m loan_default.prep ... --engine spark`.
"""

import sys

from loan_default.prep.spark import main

if __name__ == "__main__":
    sys.exit(main())
