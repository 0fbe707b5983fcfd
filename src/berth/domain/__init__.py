"""Plain records and pure logic shared by the control plane and the workers (no I/O)."""
