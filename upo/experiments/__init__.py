"""Experiments built on the library as a user would: the chit-chat data builder, the demo, `upo frontier`."""
