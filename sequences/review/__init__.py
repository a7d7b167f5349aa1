"""The engine's side of the copy agent: drafting with the model, holding drafts for reviewers,
their decisions, model costs, LangGraph checkpoints and the model request budget, and what the
timeline keeps of drafting (each model attempt, a draft that waits out a deferral).

It may import the engine and everything below it, and its peer ``sequences.delivery`` (a draft is
rendered by delivery's composer). It never imports intake.
"""
