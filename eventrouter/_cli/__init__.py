"""The ``eventrouter`` command's parts: one module per command, and what they share.

:mod:`eventrouter.cli` holds ``main`` and the argument parser; each command's ``run(args)``
lives here: :mod:`.validate`, :mod:`.tree`, :mod:`.route` (reading events with
:mod:`.events`), :mod:`.replay` and :mod:`.worker`; :mod:`.summary` renders what ``route``
and ``replay`` did, :mod:`.console` is what the command shows on stderr and stdout, and
:mod:`.exit` its exit statuses.
"""
