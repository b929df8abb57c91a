"""The self-extracting format: a shell or PowerShell header, the pack's tar and a bundled pixi-unpack."""
