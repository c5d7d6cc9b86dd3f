"""The inspector's widgets. Each shows what it is given and posts messages up; none of them
touches the store or the network (the app does, in workers)."""
