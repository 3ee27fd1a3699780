"""Benchmarks that regenerate the tables and figures of BENCHMARKS.md."""
