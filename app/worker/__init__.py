"""Workers: claiming jobs under a lease, heartbeats, and running a provider's training to its end."""
