"""job-dispatcher."""
