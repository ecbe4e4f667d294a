"""The feature catalog and the point-in-time engine; API records to engine arrays."""
