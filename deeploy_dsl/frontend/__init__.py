"""The .dply language: grammar, parser, interpreter and the Deployment spec it builds."""
