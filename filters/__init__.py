"""Cleaning steps: plain Python on Pair records, no Beam, no I/O."""
