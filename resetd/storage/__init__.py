"""resetd's storage: one interface per concern, an implementation per engine."""
