"""The OCI runtime: the runtime-spec model and the Linux container runtime behind galley-runc.

This package imports nothing of the daemon and nothing outside the standard library, so that
`galley-runc` starts with `python -I -S` and no site packages.
"""
