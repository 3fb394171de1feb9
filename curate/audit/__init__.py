"""The audit: checks of each pair's claim and of its chosen answer, written as pair_audits rows."""
