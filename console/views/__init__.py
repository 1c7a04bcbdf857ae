"""The console's pages, one module per area; each view parses input, calls one selector
or service, renders (``console.access.console_view`` guards every one)."""
