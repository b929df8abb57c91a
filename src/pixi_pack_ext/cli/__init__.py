"""The console entry points; thin: parse, call the core, report."""
