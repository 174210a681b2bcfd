"""The HTTP layer: app factory, routes, dependencies and error handlers."""
