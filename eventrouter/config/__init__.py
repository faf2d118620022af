"""Routing trees from YAML (or a mapping): read, expand, validate, build.

A configuration looks like this::

    processors:                       # the root router's chain
      - class: name_filter
        options: {allow: ["video.*", "problem.#"]}
      - myapp.tracking.add_site       # bare string: a callable (or a class with no options)
    backends:
      archive:
        class: jsonlog
        options: {path: "${EVENTROUTER_LOG:-events.log}"}
      analytics:                      # a node with `backends` is a router
        processors: [{class: redact, options: {fields: [context.ip]}}]
        backends:
          segment:
            class: segment
            enabled: ${SEGMENT_ENABLED:-false}
            options: {write_key: "${SEGMENT_WRITE_KEY}"}

:func:`load` validates everything first and reports every problem at once in one
:class:`~eventrouter.errors.ConfigError`, each with the file, line and dotted path; only a
valid tree is built. :func:`read_config` validates without building (``eventrouter validate``
and ``eventrouter tree`` use it). Settings written for openedx event-tracking (``ENGINE`` /
``OPTIONS`` dicts) are accepted unchanged and translated (see :mod:`eventrouter.config.migrate`).

The modules follow the pipeline: :mod:`~eventrouter.config.read` (YAML with positions),
:mod:`~eventrouter.config.expand` (``${VAR}``), :mod:`~eventrouter.config.validate` and
:mod:`~eventrouter.config.options` (the tree, then each node's options),
:mod:`~eventrouter.config.model` (what validation gives), :mod:`~eventrouter.config.build`;
:mod:`~eventrouter.config.secrets` keeps secrets out of everything printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from eventrouter.config.build import build
from eventrouter.config.model import ConfigNode, ConfigTree
from eventrouter.config.read import read_file
from eventrouter.config.secrets import is_secret_name, mask_uri
from eventrouter.config.validate import validate
from eventrouter.tracker import Tracker

__all__ = [
    "ConfigNode",
    "ConfigTree",
    "build",
    "is_secret_name",
    "load",
    "mask_uri",
    "read_config",
]


def read_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
) -> ConfigTree:
    """Read and validate a routing configuration without building its backends.

    Processors are constructed (they have no side effects), so that an option their
    constructor refuses is reported here; :func:`build` then uses them.

    Args:
        source: a path to a YAML file, or a mapping (already parsed YAML, or event-tracking's
            ``EVENT_TRACKING_BACKENDS`` / ``ENGINE`` dicts).
        env: the variables ``${VAR}`` expands from; defaults to ``os.environ``.

    Raises:
        ConfigError: listing every problem found, each with file, line and dotted path.
    """
    environ = os.environ if env is None else env
    if isinstance(source, Mapping):
        return validate(source, file=None, env=environ)
    file = os.fspath(source)
    data, issues = read_file(file)
    return validate(data, file=file, env=environ, issues=issues)


def load(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
) -> Tracker:
    """Build a :class:`~eventrouter.tracker.Tracker` from a YAML file or a mapping.

    Everything is validated before anything is built; every problem is reported at once.
    Settings written for openedx event-tracking (``ENGINE``/``OPTIONS``) are accepted as they
    are. Each processor is constructed once.

    Args:
        source: a path to a YAML file, or a mapping.
        env: the variables ``${VAR}`` expands from; defaults to ``os.environ``.

    Raises:
        ConfigError: the configuration is invalid, or a constructor refused its options.
    """
    return build(read_config(source, env=env))
