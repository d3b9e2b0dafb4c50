"""The fulfillment service's stages: intake, allocation, relays, API and CLI."""
