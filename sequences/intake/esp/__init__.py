"""ESP webhooks: each provider's signature check and payload format, free of the API and the DB."""
