"""The runtime-spec's closed lists that code checks at run time, without typing."""

SUPPORTED_VERSIONS = ("1.0.", "1.1.", "1.2.", "1.3.")

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

# OCI seccomp architecture names (the spec's list; libseccomp 2.5 lacks the last four), and
# libseccomp's names for them.
SECCOMP_ARCHES: dict[str, str] = {
    f"SCMP_ARCH_{name.upper()}": name
    for name in (
        "x86", "x86_64", "x32", "arm", "aarch64", "mips", "mips64", "mips64n32", "mipsel",
        "mipsel64", "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390", "s390x", "parisc",
        "parisc64", "riscv64", "loongarch64", "m68k", "sh", "sheb",
    )
}  # fmt: skip
