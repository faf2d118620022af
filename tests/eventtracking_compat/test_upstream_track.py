"""event-tracking 4.0.2's `eventtracking/tests/test_track.py`, run against eventrouter."""

from eventtracking_compat import shim

globals().update(shim.load("tests/test_track.py"))
