"""event-tracking's own tests, and side-by-side runs, against eventrouter's migration layer."""
