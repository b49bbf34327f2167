"""What assistants reach: the MCP server (``mcp``) and, next, the assistant hook handlers. Each calls the core."""
