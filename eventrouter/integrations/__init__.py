"""Web framework integrations: the request's context on every event emitted while serving it.

- :mod:`eventrouter.integrations.django`: an app and ``TrackingContextMiddleware``;
- :mod:`eventrouter.integrations.flask`: ``init_app(app)``;
- :mod:`eventrouter.integrations.asgi`: ``TrackingContextMiddleware(app)`` for any ASGI app;
- :mod:`eventrouter.integrations.celery`: tasks sent during a request run with its context;
- :mod:`eventrouter.integrations.threads`: thread pools that carry it.

All three frameworks build the same keys (see :mod:`eventrouter.integrations._request`).
"""

from __future__ import annotations

from eventrouter.integrations._request import CONTEXT_KEYS, CONTEXT_NAME

__all__ = ["CONTEXT_KEYS", "CONTEXT_NAME"]
