"""Hardening suites (issue 8): crash safety, faults, fuzzing and load, against a real daemon.

Sizes come from environment variables so that CI stays fast and ``python -m bench crash|fuzz|load``
can run the same code at scale: ``REGD_CRASH_RUNS``, ``REGD_FUZZ_EXAMPLES``, ``REGD_LOAD_SECONDS``.
"""
