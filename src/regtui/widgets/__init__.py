"""regtui's widgets; each carries its own look in DEFAULT_CSS."""
