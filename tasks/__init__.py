"""One file per task; each registers a ``Task`` instance with ``@register_task``."""
