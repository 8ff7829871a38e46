"""Student export: formats, their parity report, and text signatures."""
