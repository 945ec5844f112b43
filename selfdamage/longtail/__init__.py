"""Long-tail tools beyond SDCLR: BCL, temperature schedules, geometric harmonization."""
