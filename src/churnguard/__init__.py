"""churnguard."""
