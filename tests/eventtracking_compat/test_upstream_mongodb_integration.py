"""event-tracking 4.0.2's own tests, run against eventrouter:
`eventtracking/backends/tests/test_mongodb_integration.py`."""

import pytest

from eventtracking_compat import shim

pytestmark = [pytest.mark.usefixtures("event_tracking_shim", "upstream_mongo"), pytest.mark.peers]

globals().update(shim.load("backends/tests/test_mongodb_integration.py"))
