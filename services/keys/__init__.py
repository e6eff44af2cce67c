"""KeyService: clients register public and evaluation keys once and get a key id."""
