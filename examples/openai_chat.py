"""An ordinary OpenAI app with no tracing code in it.

Run it instrumented, with only OTEL_* settings:

    OTEL_TRACES_EXPORTER=console OTEL_SERVICE_NAME=demo opentelemetry-instrument python examples/openai_chat.py

OPENAI_BASE_URL/OPENAI_API_KEY choose the endpoint (e.g. `llmtally fake-provider` for a local fake).
"""

from __future__ import annotations

import openai


def main() -> None:
    client = openai.OpenAI(max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello in five words."}],
    )
    print(reply.choices[0].message.content)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count to three."}], stream=True,
        stream_options={"include_usage": True},
    )
    print("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))


if __name__ == "__main__":
    main()
