"""chat-completion-bot: LLM chat for Discord and Matrix, configured per channel."""
