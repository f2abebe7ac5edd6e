"""nnterp's own test suite, taken from its published wheel and run against nnspec (see harness.py)."""
