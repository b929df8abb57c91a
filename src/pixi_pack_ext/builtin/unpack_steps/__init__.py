"""Built-in steps run after the conda packages are installed."""
