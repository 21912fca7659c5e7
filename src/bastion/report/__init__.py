"""Report value types and writers (JSON, HTML, JUnit, terminal)."""
