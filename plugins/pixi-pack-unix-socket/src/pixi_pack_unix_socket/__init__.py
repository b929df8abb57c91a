"""pixi-pack-ext plugin: fetch ``http+unix://`` package URLs over a Unix domain socket."""

__version__ = "0.1.0"
