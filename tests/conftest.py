"""Suite-wide collection rules. The gateway's fixtures live in gateway/testing.py (a pytest plugin),
the parts the core's tests share in tests/support."""

import importlib.util

# The browser tests need Playwright, which only the `browser` extra installs (make test-browser);
# any other run (make test, make test-slow, a bare pytest) must not fail on importing them.
collect_ignore = [] if importlib.util.find_spec("playwright") else ["browser"]
