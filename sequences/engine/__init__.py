"""The engine proper: outbox rows, moves between steps, enrolling, ending and suppressing,
and pacing (send windows and frequency caps).

It may import signals, definitions, store and what lies below them. Delivery, review and intake
build on it; it imports none of them.
"""
