"""The services one app instance uses, kept on `app.state.services` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from locallab.config.settings import Settings
from locallab.services.downloads import DownloadManager
from locallab.services.embeddings import EmbeddingService
from locallab.services.generation import GenerationService
from locallab.services.metrics import Metrics
from locallab.services.readiness import ReadinessCheck
from locallab.services.registry import ModelRegistry
from locallab.services.response_store import ResponseStore
from locallab.services.stats import Stats
from locallab.services.system import SystemInfo


@dataclass
class Services:
    settings: Settings
    registry: ModelRegistry
    generation: GenerationService
    stats: Stats
    system: SystemInfo
    metrics: Metrics
    downloads: DownloadManager
    readiness: ReadinessCheck
    responses: ResponseStore
    embeddings: EmbeddingService


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
