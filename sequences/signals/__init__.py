"""What feedback teaches: contact and step scores, engagement summaries, the bandit glue for
variants and choices, and bot-click detection.

It may import definitions, store and what lies below them; it never moves an enrollment (that is
the engine's job).
"""
