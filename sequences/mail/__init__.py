"""Mail as bytes on the wire: MJML rendering, MIME building, DKIM signing, SMTP sending with rate
limits, the ESP tag headers, and the local capture relay. Imports nothing else of sequences."""
