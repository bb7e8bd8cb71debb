"""Content-addressed blobs (sha256): verified, resumable ingest, walk, delete, usage."""
