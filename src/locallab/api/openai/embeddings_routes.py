"""POST /v1/embeddings: OpenAI's embeddings API over the embedding service (errors in OpenAI's envelope)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from locallab.api.cancellation import cancel_on_disconnect
from locallab.api.docs import errors
from locallab.api.openai.embeddings_schemas import EmbeddingRequest, EmbeddingResponse, encode_response
from locallab.api.state import get_services

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post(
    "/embeddings",
    response_class=Response,
    responses={
        200: {"model": EmbeddingResponse, "description": "One embedding per input, in input order."},
        **errors(404, 503, openai=True),
    },
    summary="OpenAI-compatible embeddings (L2-normalised vectors from an embedding model)",
)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    services = get_services(request)
    texts = body.texts()
    encoding = body.encoding()
    result = await cancel_on_disconnect(
        request,
        services.embeddings.embed(body.model, texts, truncate=body.truncate, dimensions=body.dimensions),
    )
    content = encode_response(result.model_id, result.vectors, result.prompt_tokens, encoding)
    return Response(content=content, media_type="application/json")
