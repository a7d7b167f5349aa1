"""Events in: resolving which contact and message an event concerns, acting on it (scores, exits,
wake-ups, entry triggers), and the ESP webhook parsers under ``esp/``.

The highest engine layer: it may import every package below it; only the process wiring (runner,
worker, runtime) and the API import it.
"""
