"""Email out: composing a message from a draft, recording it, sending it over SMTP, and what
happens when the relay says no or the process dies mid-send.

It may import the engine and everything below it, and its peer ``sequences.review`` (a send step
asks review whether its draft may go). It never imports intake.
"""
