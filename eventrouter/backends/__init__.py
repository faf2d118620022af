"""Backends: anything with ``send(event)``. Routers are backends too, so trees nest."""
