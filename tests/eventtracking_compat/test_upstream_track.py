"""event-tracking 4.0.2's `eventtracking/tests/test_track.py`, run against eventrouter."""

import pytest

from eventtracking_compat import shim

pytestmark = pytest.mark.usefixtures("event_tracking_shim")

globals().update(shim.load("tests/test_track.py"))
