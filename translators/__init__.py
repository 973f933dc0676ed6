"""The built-in translators, loaded through the `ollama_gateway.translators` group."""
