"""The database: tables, engines and their lock order, migrations, contacts, events and timelines.

Everything here speaks rows, not sequences: it may import ``sequences.kit``, ``sequences.mail``,
``sequences.errors``, ``sequences.settings`` and ``sequences.deps``, never a package above it
(definitions, signals, engine, delivery, review, intake).
"""
