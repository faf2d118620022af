"""event-tracking 4.0.2's own tests, run against eventrouter:
`eventtracking/backends/tests/test_routing.py`."""

import pytest

from eventtracking_compat import shim

pytestmark = pytest.mark.usefixtures("event_tracking_shim")

globals().update(shim.load("backends/tests/test_routing.py"))
