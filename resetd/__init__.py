"""resetd: self-hosted password reset as one asyncio process, with a built-in dev inbox."""

__version__ = "0.1.0"
