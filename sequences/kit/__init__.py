"""Small pieces that know nothing of sequences: the clock, durations, arq wake-ups, HTTPS fetches.

Each is a seam a process plugs in (a real one in production, a pinned one in tests). The kit
imports only the standard library, third-party packages and ``sequences.errors``.
"""
