"""galley: a container runtime for Kubernetes nodes (CRI server, image service, OCI runtime)."""

__version__ = "0.1.0"
