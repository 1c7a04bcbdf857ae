"""The platform's JSON API (``/api/v1/``): clients authenticated by key, with scopes.

The API is another way in to the engine and the ledger, beside the admin and the
member pages: it imports them, never the other way round."""
