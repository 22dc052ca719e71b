"""Cleaners: what an option's C (clean) action does to free text, structures, graphics
and pixels."""
