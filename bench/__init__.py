"""Benchmarks: run by hand or by `make bench`; each prints figures, none asserts a timing."""
