"""MetadataStore: the one SQLite database (<root>/meta.db) with every metadata table.

Schema and migrations: galley.metadata.schema. Connections and transactions:
galley.metadata.transaction. One table per module: images, content, leases, snapshots.
Safe from several threads and processes at once (WAL, BEGIN IMMEDIATE, busy timeout).
"""

from __future__ import annotations

from galley.metadata.content import ContentTable
from galley.metadata.images import ImagesTable
from galley.metadata.leases import LeasesTable
from galley.metadata.snapshots import SnapshotsTable


class MetadataStore(ImagesTable, ContentTable, LeasesTable, SnapshotsTable):
    """Images, content references, leases and snapshot references, per namespace."""

    def namespaces(self) -> list[str]:
        """Every namespace that holds anything."""
        rows = self.conn().execute(
            "SELECT namespace FROM images UNION SELECT namespace FROM content "
            "UNION SELECT namespace FROM leases UNION SELECT namespace FROM snapshots "
            "ORDER BY 1"
        )
        return [row[0] for row in rows.fetchall()]
