"""Verification: tiny offline checkpoints (from the specs and from real published configs), the
conformance checks that compare every standard name with plain transformers, the matrix over every
spec, and the compatibility table merged from matrix runs under several library releases."""
