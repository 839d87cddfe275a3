"""The OpenAI- and Anthropic-compatible API under ``/v1/``: one module per emulated API
(``openai_chat``, ``anthropic_messages``, ``responses``, ``models``) over one translation core
(``core``) and one call flow (``gateway``): authenticate, admit, call the provider without
holding a database connection, account."""
