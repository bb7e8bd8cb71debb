"""SQLite metadata in containerd-style namespaces: images, content refs, leases, snapshots, GC."""
