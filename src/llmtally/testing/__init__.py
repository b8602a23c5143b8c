"""A fake LLM provider server speaking the real wire formats, for llmtally's tests and yours.

    from llmtally.testing import FakeProvider

    with FakeProvider() as fake:
        client = openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0)
        ...

With pytest, the ``fake_provider`` fixture (auto-registered plugin) gives a started server per test.
"""

from llmtally.testing.scenario import FakeUsage, Scenario, parse_scenario
from llmtally.testing.server import FakeProvider, FakeRequest, JsonReply, Recording, Route, StreamReply, sse

__all__ = [
    "FakeProvider",
    "FakeRequest",
    "FakeUsage",
    "JsonReply",
    "Recording",
    "Route",
    "Scenario",
    "StreamReply",
    "parse_scenario",
    "sse",
]
