"""The engine's side of the copy agent: drafting with the model, holding drafts for reviewers,
their decisions, model costs, LangGraph checkpoints and the model request budget.

It may import the engine and everything below it, and its peer ``sequences.delivery`` (a draft is
rendered by delivery's composer). It never imports intake.
"""
