"""The remembered User-Agent is byte for byte the one botocore builds, whatever features a call registers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from aiobotocore.session import get_session
from botocore.context import start_as_current_context
from botocore.useragent import UserAgentString, register_feature_id

from dispatcher.aws import AwsClients

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def clients(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AwsClients]:
    """Open clients, as the worker has them (no call is made)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    clients = AwsClients(pool_size=1, connect_timeout_s=1, call_timeout_s=1)
    await clients.open(["m2"], ["us-east-1"])
    yield clients
    await clients.close()


def botocore_user_agent(creator: UserAgentString) -> str:
    """What botocore itself builds, past the remembered method."""
    return UserAgentString.to_string(creator)


async def test_remembered_user_agent_equals_botocores_with_and_without_features(clients: AwsClients) -> None:
    """A call's features reach the header, and leave it with the call."""
    creator = (await clients._client("m2", "us-east-1"))._user_agent_creator
    plain = creator.to_string()
    assert plain == botocore_user_agent(creator)
    with start_as_current_context():
        register_feature_id("RETRY_MODE_STANDARD")
        register_feature_id("PAGINATOR")
        with_features = creator.to_string()
        assert with_features == botocore_user_agent(creator)
    assert with_features != plain, "a call's features must reach its User-Agent"
    assert creator.to_string() == plain, "features of one call must not stay for the next"


async def test_a_client_made_without_the_dispatcher_builds_the_same_string(clients: AwsClients) -> None:
    """Remembering changes nothing a plain aiobotocore client would send."""
    creator = (await clients._client("m2", "us-east-1"))._user_agent_creator
    config = clients._config
    async with get_session().create_client("m2", region_name="us-east-1", config=config) as client:
        assert creator.to_string() == client._user_agent_creator.to_string()
