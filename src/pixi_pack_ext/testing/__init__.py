"""Helpers to build a real conda world offline, for tests, examples and plugin authors."""
