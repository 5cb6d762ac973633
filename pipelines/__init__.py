"""Beam assembly: readers, step DoFns, writers and the runnable pipelines."""
