"""`python -m loan_default.synthetic --loans 100000 --out data/synthetic --seed 2024`."""

from loan_default.synthetic.generate import main

if __name__ == "__main__":
    main()
