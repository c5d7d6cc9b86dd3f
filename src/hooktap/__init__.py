"""hooktap: a local webhook tunnel and inspector for Pivotal's Svix-signed webhooks."""

__version__ = "0.1.0"
