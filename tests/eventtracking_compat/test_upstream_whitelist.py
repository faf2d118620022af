"""event-tracking 4.0.2's own tests, run against eventrouter:
`eventtracking/processors/tests/test_whitelist.py`."""

import pytest

from eventtracking_compat import shim

pytestmark = pytest.mark.usefixtures("event_tracking_shim")

globals().update(shim.load("processors/tests/test_whitelist.py"))
