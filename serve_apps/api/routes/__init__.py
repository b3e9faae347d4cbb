"""One router per resource, gathered by ``serve_apps.api.app``."""
