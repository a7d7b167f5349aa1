"""The sequence document: its fields and validation, loading YAML, versions, the template sandbox,
and the send-window schedule.

It may import ``sequences.store`` and what lies below it; the engine and everything above read
definitions, never the other way round.
"""
