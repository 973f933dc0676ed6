"""Wire Structs: `ollama` (what clients speak) and `openai` (what backends speak)."""

from ollama_gateway.schemas import ollama, openai

__all__ = ["ollama", "openai"]
