"""What the bot knows without asking an endpoint: built-in model lists and setup steps."""

from __future__ import annotations

from bot.types import Source

# Offered until an admin runs /models external; the endpoint's own list is the truth.
BUILTIN_MODELS: dict[Source, tuple[str, ...]] = {
    Source.OPENAI: (
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-4o",
        "gpt-4o-mini",
        "o3",
        "o3-mini",
        "o4-mini",
    ),
    Source.CLAUDE: (
        "claude-opus-4-1",
        "claude-opus-4-0",
        "claude-sonnet-4-5",
        "claude-sonnet-4-0",
        "claude-haiku-4-5",
        "claude-3-7-sonnet-latest",
        "claude-3-5-haiku-latest",
    ),
    Source.MISTRAL: (
        "mistral-large-latest",
        "mistral-medium-latest",
        "mistral-small-latest",
        "magistral-medium-latest",
        "magistral-small-latest",
        "codestral-latest",
        "pixtral-large-latest",
        "ministral-8b-latest",
        "ministral-3b-latest",
        "open-mistral-nemo",
    ),
    Source.CUSTOM: (),
}

# The seed's steps per source (SillyTavern's Chat Completion page), as commands.
SETUP_STEPS: dict[Source, tuple[str, ...]] = {
    Source.OPENAI: (
        "Get an API key from the OpenAI platform (a lost key can't be shown again; "
        "make a new one).",
        "{p}source openai",
        "{p}key set openai{key}",
        "{p}connect  (status check)",
        "{p}models list or {p}models external, then {p}model <id>",
    ),
    Source.CLAUDE: (
        "Get an API key from the Anthropic console.",
        "{p}source claude",
        "{p}key set claude{key}",
        "{p}connect  (we can check Claude keys, unlike SillyTavern)",
        "{p}model <id>, e.g. claude-sonnet-4-5",
    ),
    Source.MISTRAL: (
        "Get an API key from La Plateforme; a new key can take a couple of minutes to work.",
        "{p}source mistral",
        "{p}key set mistral{key}",
        "{p}connect",
        "{p}model <id>, e.g. mistral-large-latest",
    ),
    Source.CUSTOM: (
        "Any OpenAI-compatible endpoint: LM Studio, LiteLLM, LocalAI, TabbyAPI, llama.cpp…",
        "{p}source custom",
        "{p}proxy set <url>  (/v1 is added for you when needed)",
        "if it wants a password (TabbyAPI's key, a LiteLLM master key): "
        "{p}proxy password{password}",
        "{p}connect  (endpoints that work but fail the check: {p}connect bypass:on)",
        "{p}models external, then {p}model <id>",
    ),
}


# What people call a source here by another name: SillyTavern's "Custom (OpenAI-compatible)"
# and the servers the README names for it, the vendor behind a source. Keyed by the name
# with everything but letters and digits left out (`LM Studio`, `lm-studio`: lmstudio).
# `/source lmstudio` is refused (nothing changes) with the source it is.
KNOWN_AS: dict[str, tuple[Source, str]] = {
    "anthropic": (Source.CLAUDE, "Anthropic's models are"),
    "mistralai": (Source.MISTRAL, "Mistral AI is"),
    "chatgpt": (Source.OPENAI, "ChatGPT's models are"),
    **dict.fromkeys(
        ("openaicompatible", "customopenaicompatible", "compatible"),
        (Source.CUSTOM, "an OpenAI-compatible endpoint is"),
    ),
    **{
        key: (Source.CUSTOM, f"{name} is an OpenAI-compatible endpoint:")
        for key, name in (
            ("lmstudio", "LM Studio"),
            ("litellm", "LiteLLM"),
            ("localai", "LocalAI"),
            ("tabbyapi", "TabbyAPI"),
            ("tabby", "TabbyAPI"),
            ("ollama", "Ollama"),
            ("vllm", "vLLM"),
            ("llamacpp", "llama.cpp"),
            ("koboldcpp", "KoboldCpp"),
            ("oobabooga", "text-generation-webui"),
            ("textgenerationwebui", "text-generation-webui"),
            ("openrouter", "OpenRouter"),
            ("groq", "Groq"),
            ("deepseek", "DeepSeek"),
            ("together", "Together AI"),
            ("togetherai", "Together AI"),
            ("fireworks", "Fireworks AI"),
            ("perplexity", "Perplexity"),
            ("xai", "xAI"),
        )
    },
}


def known_as(typed: str) -> tuple[Source, str] | None:
    """The source `typed` (a name for one that is not a source's own) stands for, with how
    to say so; None when it names none."""
    return KNOWN_AS.get("".join(c for c in typed.lower() if c.isascii() and c.isalnum()))
