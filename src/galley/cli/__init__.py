"""The `galley` command: image verbs on a local store, with no daemon."""
