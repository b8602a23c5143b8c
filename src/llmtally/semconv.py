"""Every attribute, metric, event and unit name llmtally emits: the only place they are spelled.

Dashboards, alert rules, collector configs and users' queries depend on these strings, so they follow
OpenTelemetry GenAI semantic conventions v1.41.0, the open cost proposal (semantic-conventions-genai
#443) for ``gen_ai.usage.cost.*``, and the ``llmtally.`` namespace for our own extensions.
"""

from __future__ import annotations

from typing import Final

SEMCONV_VERSION: Final = "1.41.0"
INSTRUMENTATION_SCOPE: Final = "llmtally"

# --- Operation / provider -------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # its name before semconv 1.37; still read from older spans
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"


class Operation:
    """Values of ``gen_ai.operation.name``."""

    CHAT: Final = "chat"
    TEXT_COMPLETION: Final = "text_completion"
    GENERATE_CONTENT: Final = "generate_content"
    EMBEDDINGS: Final = "embeddings"
    CREATE_AGENT: Final = "create_agent"
    INVOKE_AGENT: Final = "invoke_agent"
    EXECUTE_TOOL: Final = "execute_tool"
    IMAGE_GENERATION: Final = "image_generation"  # not yet in semconv; used for images.generate


class Provider:
    """Well-known values of ``gen_ai.provider.name``; others are lower-case product names."""

    OPENAI: Final = "openai"
    AZURE_OPENAI: Final = "azure.ai.openai"
    AZURE_INFERENCE: Final = "azure.ai.inference"
    ANTHROPIC: Final = "anthropic"
    AWS_BEDROCK: Final = "aws.bedrock"
    GCP_GEMINI: Final = "gcp.gemini"
    GCP_VERTEX_AI: Final = "gcp.vertex_ai"
    GCP_GEN_AI: Final = "gcp.gen_ai"
    MISTRAL_AI: Final = "mistral_ai"
    COHERE: Final = "cohere"
    GROQ: Final = "groq"
    DEEPSEEK: Final = "deepseek"
    X_AI: Final = "x_ai"
    PERPLEXITY: Final = "perplexity"
    IBM_WATSONX_AI: Final = "ibm.watsonx.ai"
    # Not well-known in semconv: lower-case product names.
    OLLAMA: Final = "ollama"
    OPENROUTER: Final = "openrouter"
    TOGETHER: Final = "together_ai"
    FIREWORKS: Final = "fireworks_ai"
    # The httpx fallback's provider for an OpenAI-/Anthropic-wire endpoint on a host it does not know
    # (self-hosted servers, gateways): deliberately no catalog provider, so unpriced without a price file.
    OPENAI_COMPATIBLE: Final = "openai_compatible"
    ANTHROPIC_COMPATIBLE: Final = "anthropic_compatible"
    # Cohere's SDK clients for other clouds (not semconv well-known names; lower-case as semconv asks).
    AWS_SAGEMAKER: Final = "aws.sagemaker"
    OCI_GENERATIVE_AI: Final = "oci.generative_ai"
    # A LiteLLM call whose model litellm cannot route to a provider (litellm rejects it).
    LITELLM: Final = "litellm"


# --- Request / response ---------------------------------------------------------------------------
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
OPENAI_API_TYPE: Final = "openai.api.type"
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"


class OpenAIApiType:
    CHAT_COMPLETIONS: Final = "chat_completions"
    RESPONSES: Final = "responses"


# --- Tokens (semconv-inclusive: input includes cache read/write, output includes reasoning) -------
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
# Names before semconv 1.27, still read from older instrumentations' spans (never written).
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
# Where a peer's span keeps each token count: a ``Usage.build`` field, then its keys (the semconv name
# first, then older and peer spellings; the first key present wins). The one table the processor, the
# collector plugin and the generated OTTL statements all read.
SPAN_USAGE_SOURCES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("input_tokens", (GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS)),
    ("output_tokens", (GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_USAGE_COMPLETION_TOKENS)),
    ("cache_read_tokens", (GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, "gen_ai.usage.cache_read_input_tokens")),
    ("cache_write_tokens", (GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, "gen_ai.usage.cache_creation_input_tokens",
                            "gen_ai.usage.cache_write.input_tokens")),  # anthropic's own spans
    ("cache_write_1h_tokens", ("anthropic.usage.cache_creation.ephemeral_1h_input_tokens",)),
    ("reasoning_tokens", (GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, "gen_ai.usage.reasoning_tokens")),
)
# Any of these makes a span "carry usage": the input and output keys, semconv names first.
SPAN_USAGE_KEYS: Final = tuple(key for pair in zip(SPAN_USAGE_SOURCES[0][1], SPAN_USAGE_SOURCES[1][1], strict=True)
                               for key in pair)

# --- Cost (proposal #443; inference spans only) ---------------------------------------------------
GEN_AI_USAGE_COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY: Final = "gen_ai.usage.cost.currency"
GEN_AI_USAGE_COST_SOURCE: Final = "gen_ai.usage.cost.source"
COST_CURRENCY_USD: Final = "USD"


class CostSource:
    PROVIDER: Final = "provider"  # the response itself carried a price
    LOCAL: Final = "local"  # computed by llmtally's pricing engine


# --- llmtally extensions --------------------------------------------------------------------------
LLMTALLY_USAGE_ESTIMATED: Final = "llmtally.usage.estimated"
LLMTALLY_USAGE_CLAMPED: Final = "llmtally.usage.clamped"
LLMTALLY_COST_STATUS: Final = "llmtally.cost.status"
LLMTALLY_COST_DECIMAL: Final = "llmtally.cost.decimal"  # exact amount as a decimal string
LLMTALLY_COST_CACHE_SAVINGS: Final = "llmtally.cost.cache_savings"  # decimal string: cache reads vs uncached
LLMTALLY_COST_PREFIX: Final = "llmtally.cost."  # + leaf name: per-leaf cost breakdown (double)
LLMTALLY_PRICE_CATALOG: Final = "llmtally.price.catalog"  # catalog name and version, or override file
LLMTALLY_PRICE_MODEL: Final = "llmtally.price.model"  # the catalog entry the call was priced as


class CostStatus:
    PRICED: Final = "priced"
    UNPRICED: Final = "unpriced"
    FREE: Final = "free"  # a local model (Ollama) with no price file: explicitly $0, not unknown


# --- Attribution (set through llmtally.attributes(), carried in baggage) ----------------------------
USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
LLMTALLY_TENANT_ID: Final = "llmtally.tenant.id"
LLMTALLY_FEATURE: Final = "llmtally.feature"

# --- Token leaves: disjoint, they sum to input + output -------------------------------------------
LLMTALLY_TOKEN_KIND: Final = "llmtally.token.kind"


class TokenLeaf:
    """Values of ``llmtally.token.kind`` and the keys of a cost breakdown."""

    UNCACHED_INPUT: Final = "uncached_input"
    CACHE_READ: Final = "cache_read"
    CACHE_WRITE: Final = "cache_write"
    OUTPUT: Final = "output"  # visible output (output minus reasoning)
    REASONING: Final = "reasoning"


TOKEN_LEAVES: Final = (
    TokenLeaf.UNCACHED_INPUT,
    TokenLeaf.CACHE_READ,
    TokenLeaf.CACHE_WRITE,
    TokenLeaf.OUTPUT,
    TokenLeaf.REASONING,
)

# --- Metrics --------------------------------------------------------------------------------------
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_OPERATION_COST: Final = "gen_ai.client.operation.cost"
METRIC_TOKENS_BY_KIND: Final = "llmtally.tokens"
METRIC_UNPRICED_CALLS: Final = "llmtally.calls.unpriced"
METRIC_ESTIMATED_CALLS: Final = "llmtally.calls.estimated"
METRIC_INTERNAL_ERRORS: Final = "llmtally.internal.errors"
METRIC_MALFORMED_PAYLOADS: Final = "llmtally.payloads.malformed"
# USD the prompt cache saved: what cache reads would have cost as uncached input, minus what they cost.
METRIC_CACHE_SAVINGS: Final = "llmtally.cache.savings"

GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
LLMTALLY_ERROR_KIND: Final = "llmtally.error.kind"


class TokenType:
    INPUT: Final = "input"
    OUTPUT: Final = "output"


UNIT_TOKEN: Final = "{token}"
UNIT_SECONDS: Final = "s"
UNIT_USD: Final = "USD"
UNIT_CALL: Final = "{call}"
UNIT_ERROR: Final = "{error}"

# Explicit bucket boundaries advised by the GenAI semconv.
TOKEN_USAGE_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                              16777216, 67108864)
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                           40.96, 81.92)
# Per-call cost in USD: from a fraction of a micro-dollar to tens of dollars.
COST_BUCKETS: Final = (0.000001, 0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 25.0)

# --- Usage log record -----------------------------------------------------------------------------
USAGE_EVENT_NAME: Final = "llmtally.usage"
LLMTALLY_RECORD_ID: Final = "llmtally.record.id"  # trace id + span id: idempotency key for the ledger
LLMTALLY_DURATION: Final = "llmtally.duration"  # seconds
LLMTALLY_ERROR_MESSAGE: Final = "llmtally.error.message"
LLMTALLY_CACHE_WRITE_1H_TOKENS: Final = "llmtally.usage.cache_creation_1h.input_tokens"
LLMTALLY_SOURCE: Final = "llmtally.source"  # instrumentation scope that observed the call
LLMTALLY_TRACE_ID: Final = "llmtally.trace_id"
LLMTALLY_SPAN_ID: Final = "llmtally.span_id"

# --- Settings (environment) -----------------------------------------------------------------------
ENV_METRIC_ATTRIBUTES: Final = "LLMTALLY_METRIC_ATTRIBUTES"
ENV_METRIC_ATTRIBUTE_LIMIT: Final = "LLMTALLY_METRIC_ATTRIBUTE_LIMIT"
OVERFLOW_VALUE: Final = "other"

# --- Content (recorded only when ENV_CAPTURE_MESSAGE_CONTENT opts in) ------------------------------
ENV_CAPTURE_MESSAGE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
