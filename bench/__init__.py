"""regd's benchmarks: ``python -m bench <name>``, results written to docs/BENCHMARKS.md."""
