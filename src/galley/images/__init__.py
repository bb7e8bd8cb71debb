"""Images: references, registry client, pull/push, archives, layer unpack."""
