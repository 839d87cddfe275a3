"""A local stand-in for the OpenAI and Anthropic APIs (see ``server.py``)."""

from llm.standin.server import StandinServer

__all__ = ["StandinServer"]
