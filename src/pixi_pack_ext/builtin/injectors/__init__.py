"""Built-in injectors for ``--inject``."""
