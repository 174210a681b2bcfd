"""One router per concern: predictions, health and readiness, service info."""
