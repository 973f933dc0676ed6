"""Every `web.AppKey` of the application, in one place."""

from __future__ import annotations

from aiohttp import web

from ollama_gateway.catalogue import Catalogue
from ollama_gateway.context import RequestContext
from ollama_gateway.metrics import Metrics
from ollama_gateway.pipeline import Pipeline
from ollama_gateway.plugins import TranslatorSpec
from ollama_gateway.response_store import ResponseStore
from ollama_gateway.running import RunningModels
from ollama_gateway.settings import Settings
from ollama_gateway.shutdown import InFlight
from ollama_gateway.upstream import Upstream

__all__ = [
    "catalogue_key",
    "ctx_key",
    "in_flight_key",
    "metrics_key",
    "pipeline_key",
    "response_store_key",
    "running_key",
    "settings_key",
    "specs_key",
    "upstream_key",
]

settings_key = web.AppKey("settings_key", Settings)
specs_key = web.AppKey("specs_key", dict[str, TranslatorSpec])
pipeline_key = web.AppKey("pipeline_key", Pipeline)
catalogue_key = web.AppKey("catalogue_key", Catalogue)
upstream_key = web.AppKey("upstream_key", Upstream)
running_key = web.AppKey("running_key", RunningModels)
response_store_key = web.AppKey("response_store_key", ResponseStore)
metrics_key = web.AppKey("metrics_key", Metrics)
in_flight_key = web.AppKey("in_flight_key", InFlight)

ctx_key = web.RequestKey("ctx_key", RequestContext)
