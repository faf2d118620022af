"""event-tracking 4.0.2's own tests, run against eventrouter:
`eventtracking/processors/tests/test_whitelist.py`."""

from eventtracking_compat import shim

globals().update(shim.load("processors/tests/test_whitelist.py"))
