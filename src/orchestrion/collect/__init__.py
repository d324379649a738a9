"""Collect: the Segment/RudderStack-compatible gateway, data contracts, normalization and dedup."""
