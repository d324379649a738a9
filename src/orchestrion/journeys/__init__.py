"""Not built yet: see the open issues. Importing a capability from here raises a clear error."""
