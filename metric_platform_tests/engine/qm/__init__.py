"""Tests of the QM profiling core."""
