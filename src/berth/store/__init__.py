"""Storage behind narrow interfaces. Only this package imports database drivers."""
