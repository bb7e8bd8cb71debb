"""Images: references, registry client, pull/push, archives, layer unpack.

    pull.py / push.py / archive.py        the operations (on a store.Store)
        │            │
        ▼            ▼
    registry.py  distribution API for one repository (manifests, blobs, uploads)
    transport.py HTTP on http.client + ssl: pooling, TLS, auth retries, redirects
    auth.py      credentials, challenges, Basic and Bearer tokens
    hosts.py     containerd's certs.d/<host>/hosts.toml
    reference.py, platforms.py, mediatypes.py, tree.py   value types and the content tree
    unpacked.py  a stored image into snapshots (import), with its GC labels
    unpack.py, tarapply.py, decompress.py, tarsafe.py, layerstream.py    layers into snapshots
    store.py     content store + metadata + snapshotters of one root

Dependencies point down the drawing.
"""
