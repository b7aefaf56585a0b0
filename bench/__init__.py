"""simstack benchmarks: `make bench` (`python -m bench`). See README.md here."""
