"""Stage 3: which deployment serves the requested model. (A router plugs in here.)"""

from __future__ import annotations

from ..config import Settings
from ..errors import InvalidRequest, NotFound
from ..providers import Provider, create_provider
from .authenticate import require_model_access
from .context import Call


class Resolve:
    name = "resolve"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._providers: dict[str, Provider] = {}

    def provider_for(self, name: str) -> Provider | None:
        dep = self.settings.find_deployment(name)
        if dep is None:
            return None
        prov = self._providers.get(dep.name)
        if prov is None:
            prov = self._providers[dep.name] = create_provider(dep)
        return prov

    async def __call__(self, call: Call) -> None:
        model = call.body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("'model' is required and must be a string.", param="model")
        call.record.requested_model = model
        require_model_access(call, model)
        provider = self.provider_for(model)
        if provider is None:
            raise NotFound(f"The model '{model}' does not exist or is not configured.")
        if call.op == "embeddings" and not provider.supports_embeddings:
            raise InvalidRequest(f"Model '{model}' does not serve embeddings.", param="model")
        call.deployment = provider.deployment
        call.provider = provider
        rec = call.record
        rec.deployment = provider.deployment.name
        rec.provider = provider.name
        rec.served_model = provider.deployment.upstream_model(model)

    async def close(self) -> None:
        for prov in self._providers.values():
            await prov.close()
        self._providers.clear()
