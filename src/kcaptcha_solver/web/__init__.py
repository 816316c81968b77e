"""The browser page (static files beside this module) and :mod:`.site`, which serves or publishes it."""
