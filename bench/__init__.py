"""The gateway's benchmark suite: ``python -m bench [--quick]`` / ``make bench [QUICK=1]``.

Not part of ``make test``; see docs/performance.md for what it measures and how.
"""
