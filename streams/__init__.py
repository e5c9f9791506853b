"""Stream processing: pure logic modules (geometry, membership, ids) and the thin workers around them."""
