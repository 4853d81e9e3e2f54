"""Performance benchmarks that anyone can rerun: each compares ftbench with a baseline measured in the same run."""
