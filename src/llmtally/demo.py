"""``llmtally demo``: a realistic mixed workload against the fake provider, through the real SDKs that are
installed, recorded in a ledger and reported. No API key, no network beyond 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TENANTS = ("acme", "globex", "initech")
USERS = {"acme": ("ana", "ben"), "globex": ("chen", "dora"), "initech": ("eve",)}
FEATURES = ("search", "summarise", "support-chat")


@dataclass(frozen=True)
class Step:
    """One call of the workload: what it does and under which attribution."""

    kind: str  # chat | chat-stream | chat-stream-no-usage | responses | embeddings | error | unknown-model
    #            | anthropic | anthropic-stream (when the anthropic SDK is installed)
    model: str
    tenant: str
    user: str
    feature: str
    usage: dict[str, int]


def workload(calls: int, seed: int = 7, anthropic: bool = False, gemini: bool = False,
             local: bool = False) -> list[Step]:
    """A deterministic mix: several tenants, users, features and models; streams, cache hits,
    reasoning, an error and an unknown model; Claude calls with cache writes when ``anthropic``."""
    rng = random.Random(seed)
    steps = []
    for i in range(calls):
        tenant = rng.choice(TENANTS)
        user = rng.choice(USERS[tenant])
        feature = rng.choice(FEATURES)
        prompt = rng.randint(200, 6000)
        output = rng.randint(20, 800)
        usage = {"input": prompt, "output": output}
        roll = i % 20
        if roll in (0, 1, 2, 3, 4, 5):
            kind, model = "chat", "gpt-4o-mini"
            if rng.random() < 0.5:
                usage["cache_read"] = (prompt // 1024) * 1024  # OpenAI caches in 1,024-token blocks
        elif roll in (6, 7, 8):
            kind, model = "chat-stream", "gpt-4o-mini"
        elif roll == 9:
            kind, model = "chat-stream-no-usage", "gpt-4o"
        elif roll in (10, 11):
            kind, model = "chat", "gpt-4o"
        elif roll in (12, 13):
            kind, model = "responses", "o3"
            usage["reasoning"] = output // 2
        elif roll in (14, 15, 16):
            kind, model, usage = "embeddings", "text-embedding-3-small", {"input": prompt}
        elif roll == 17:
            kind, model = "error", "gpt-4o-mini"
        elif roll == 18:
            kind, model = "unknown-model", "house-llm-7b"
        else:
            kind, model = "chat", "gpt-4o-mini"
        if local and roll == 13:
            kind, model, usage = "ollama", "llama3.2", {"input": prompt, "output": output}
        if gemini and roll in (2, 16):
            kind, model = ("gemini-stream" if roll == 16 else "gemini"), "gemini-2.5-flash"
            usage = {"input": prompt, "output": output, "reasoning": output // 3}
        if anthropic and roll in (3, 7, 19):
            kind, model = ("anthropic-stream" if roll == 7 else "anthropic"), "claude-haiku-4-5"
            usage = {"input": prompt, "output": output, "cache_read": prompt // 2, "cache_write": prompt // 4,
                     "cache_write_1h": prompt // 8}
        steps.append(Step(kind, model, tenant, user, feature, usage))
    return steps


def run_step(client: Any, step: Step, claude: Any = None, gemini: Any = None, local: Any = None) -> None:
    import openai

    headers = {"X-Fake-Usage": json.dumps(step.usage)}
    messages = [{"role": "user", "content": f"{step.feature} request from {step.user}"}]
    if step.kind == "ollama":
        local.chat(model=step.model, messages=messages)
    elif step.kind in ("gemini", "gemini-stream"):
        from google.genai import types as gtypes

        config = gtypes.GenerateContentConfig(http_options=gtypes.HttpOptions(headers=headers))
        if step.kind == "gemini":
            gemini.models.generate_content(model=step.model, contents=messages[0]["content"], config=config)
        else:
            for _ in gemini.models.generate_content_stream(model=step.model, contents=messages[0]["content"],
                                                           config=config):
                pass
    elif step.kind == "anthropic":
        claude.messages.create(model=step.model, max_tokens=1024, messages=messages, extra_headers=headers)
    elif step.kind == "anthropic-stream":
        with claude.messages.stream(model=step.model, max_tokens=1024, messages=messages,
                                    extra_headers=headers) as stream:
            for _ in stream.text_stream:
                pass
    elif step.kind == "chat" or step.kind == "unknown-model":
        client.chat.completions.create(model=step.model, messages=messages, extra_headers=headers)
    elif step.kind == "chat-stream":
        for _ in client.chat.completions.create(model=step.model, messages=messages, stream=True,
                                                stream_options={"include_usage": True}, extra_headers=headers):
            pass
    elif step.kind == "chat-stream-no-usage":  # usage estimated and flagged
        for _ in client.chat.completions.create(model=step.model, messages=messages, stream=True,
                                                extra_headers=headers):
            pass
    elif step.kind == "responses":
        client.responses.create(model=step.model, input=messages[0]["content"], extra_headers=headers)
    elif step.kind == "embeddings":
        client.embeddings.create(model=step.model, input=messages[0]["content"], extra_headers=headers)
    elif step.kind == "error":
        with contextlib.suppress(openai.RateLimitError):
            client.chat.completions.create(model=step.model, messages=messages,
                                           extra_headers={**headers, "X-Fake-Scenario": "error-429"})


def default_demo_ledger() -> str:
    return f"sqlite:///{Path(tempfile.gettempdir()) / 'llmtally-demo' / 'ledger.sqlite'}"


def run_demo(calls: int, ledger_url: str, progress: bool = True,
             out: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the workload, flush everything to the ledger, print reports; returns the report totals."""
    import llmtally
    from llmtally.ledger import Ledger, report
    from llmtally.ledger.render import render
    from llmtally.testing import FakeProvider

    try:
        import openai
    except ImportError:
        raise SystemExit("llmtally demo needs the openai SDK: pip install 'llmtally[openai]'") from None

    try:
        import anthropic
    except ImportError:
        anthropic = None  # type: ignore[assignment]
    try:
        from google import genai
    except ImportError:
        genai = None  # type: ignore[assignment]
    try:
        import ollama
    except ImportError:
        ollama = None  # type: ignore[assignment]
    steps = workload(calls, anthropic=anthropic is not None, gemini=genai is not None, local=ollama is not None)
    ledger = Ledger(ledger_url)
    ledger.ensure_schema()
    before = ledger.count()
    config = llmtally.configure(service_name="llmtally-demo", otlp=False, ledger=ledger_url)
    try:
        with FakeProvider() as fake:
            client = openai.OpenAI(base_url=fake.openai_url, api_key="demo-key", max_retries=0)
            claude = (anthropic.Anthropic(base_url=fake.anthropic_url, api_key="demo-key", max_retries=0)
                      if anthropic is not None else None)
            local = None
            if ollama is not None:  # a local model: cost status "free" unless a price file prices it
                local = ollama.Client(host=fake.url,
                                      headers={"X-Fake-Usage": json.dumps({"input": 900, "output": 200})})
            gemini = None
            if genai is not None:
                from google.genai import types as gtypes

                gemini = genai.Client(api_key="demo-key", http_options=gtypes.HttpOptions(base_url=fake.gemini_url))
            if progress:
                from rich.progress import track

                iterator: Any = track(steps, description="Calling LLMs through the fake provider")
            else:
                iterator = steps
            for step in iterator:
                with llmtally.attributes(tenant_id=step.tenant, user_id=step.user, feature=step.feature):
                    run_step(client, step, claude, gemini, local)
    finally:
        config.shutdown()  # flushes usage records into the ledger
    added = ledger.count() - before
    by_model = report(ledger, ["model"])
    by_tenant = report(ledger, ["tenant", "feature"])
    out(render(by_model, "table", title=f"Spend by model ({ledger.count()} calls in the ledger)"))
    out(render(by_tenant, "table", title="Spend by tenant and feature"))
    out(f"{added} usage records written to {ledger_url}")
    out(f"Explore them:  llmtally report --ledger {ledger_url} --by day,tenant --format table")
    totals = by_model.total.as_dict()
    totals["added"] = added
    return totals
