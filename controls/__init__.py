"""Controls: untrained reference bases, one file each (SPEC section 2)."""
