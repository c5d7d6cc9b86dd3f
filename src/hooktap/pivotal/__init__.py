"""Everything hooktap knows about Pivotal: its event catalog, Svix signing and verification,
its retry rules, and the checks `hooktap check` holds a handler to. No I/O except checks.py."""
