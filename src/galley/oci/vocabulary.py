"""The runtime-spec's closed lists that code checks at run time, without typing."""

SUPPORTED_VERSIONS = ("1.0.", "1.1.", "1.2.", "1.3.")

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
