"""pixi-pack-oci: write a packed pixi environment as an OCI container image, without Docker.

``pixi-pack --format oci -e prod -p linux-64 -o image.tar`` installs the environment for the target
platform at pack time and writes an OCI image archive (``docker load``, ``podman load``, skopeo,
umoci) whose layers are the base image's (``--base-image``), the environment and an entrypoint that
activates it.
"""

__version__ = "0.1.0"
