"""The corpus ledger: snapshots of what a build wrote, committed atomically."""
