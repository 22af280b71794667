"""Who the caller is (docs/spec.md §2): tokens.py verifies and mints bearer tokens; keys.py
loads the PEM public keys they may be signed with."""
