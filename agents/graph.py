"""The copy graph, per due email step:

gather → choose → draft → check → (revise → check)* → fallback? → render → review

``review`` stops at an ``interrupt`` when the request needs a human, and a Decision resumes it.
"""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agents import nodes
from agents.state import AgentContext, CopyState

CopyGraph = CompiledStateGraph[CopyState, AgentContext, CopyState, CopyState]


def build(checkpointer: BaseCheckpointSaver[str] | None = None) -> CopyGraph:
    graph = StateGraph(CopyState, context_schema=AgentContext)
    graph.add_node("gather", nodes.gather)
    graph.add_node("choose", nodes.choose)
    graph.add_node("draft", nodes.draft)
    graph.add_node("check", nodes.check)
    graph.add_node("revise", nodes.revise)
    graph.add_node("fallback", nodes.fallback)
    graph.add_node("render", nodes.render)
    graph.add_node("review", nodes.review, destinations=("draft", "fallback", "render", END))
    graph.add_edge(START, "gather")
    graph.add_edge("gather", "choose")
    graph.add_edge("choose", "draft")
    graph.add_conditional_edges("draft", nodes.after_draft, ["check", "render", "fallback"])
    graph.add_edge("revise", "check")
    graph.add_conditional_edges("check", nodes.after_check, ["render", "revise", "fallback"])
    graph.add_edge("fallback", "render")
    graph.add_edge("render", "review")
    return graph.compile(checkpointer=checkpointer, name="dripline-copy")
