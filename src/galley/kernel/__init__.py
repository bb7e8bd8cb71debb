"""The one place galley talks to the kernel and to C libraries (through ffi, a lean ctypes).

Every other package calls the typed functions here; none of them touches ffi or ctypes. Each
function raises OSError with the errno and a message naming the syscall and its path arguments,
as crun does, so a failure deep in container setup still says what went wrong where.

Modules, one kernel concept each:
    ffi       the C types and library loading of ctypes, without ctypes' ~8 ms import
    libc      loading libc, calling with errno checks
    mount     mount, umount2, pivot_root, openat2, open_tree/move_mount, mount_setattr
    ns        unshare, setns, namespace flags
    proc      prctl, sethostname/setdomainname, process attributes
    caps      capget/capset and capability names
    seccomp   libseccomp bindings
"""
