"""The labeler's side: leases on tasks, demonstrations and rankings submitted or skipped, and the labeler pages."""
