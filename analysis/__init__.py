"""Human statistics, encoders, metrics and the correlation report (no Flask)."""
