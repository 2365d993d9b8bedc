"""The client matrix, Python side: the `openai` SDK (sync and async), litellm and
langchain-openai, each real and unmodified, against a node in front of the independent stub."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from client_drivers import CHAT_MODEL, PYTHON_DRIVERS, Driver
from client_matrix import QUESTION, Scenario, cases, user
from openai_stub import GOOD_KEY, OpenAIStub

from node_harness import Node

# litellm's own types warn about themselves under this pydantic; nothing a caller can change
pytestmark = [
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


@pytest.mark.parametrize(("driver", "scenario"), cases(PYTHON_DRIVERS))
async def test_client_matrix(
    driver: type[Driver],
    scenario: Scenario,
    openai_stub: tuple[OpenAIStub, str],
    matrix_node: Node,
) -> None:
    await scenario(driver(f"{matrix_node.url}/v1"), openai_stub[0], matrix_node)


async def test_litellm_prices_a_hit_at_the_cached_rate(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    """litellm's own cost (`response_cost`) of a hit counts its prompt as cached tokens."""
    import litellm

    def cost() -> tuple[float, Any]:
        response = litellm.completion(
            model=f"openai/{CHAT_MODEL}",
            messages=user(QUESTION),
            api_base=f"{matrix_node.url}/v1",
            api_key=GOOD_KEY,
            max_retries=0,
        )
        return response._hidden_params["response_cost"], response.usage

    miss_cost, miss_usage = await asyncio.to_thread(cost)
    await matrix_node.settle()
    hit_cost, hit_usage = await asyncio.to_thread(cost)
    assert hit_usage.prompt_tokens_details.cached_tokens == miss_usage.prompt_tokens
    assert 0 < hit_cost < miss_cost
    assert openai_stub[0].calls["chat"] == 1
