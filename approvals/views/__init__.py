"""HTML views of the approvals app (htmx-aware): the reviewer side, the overview, the Admin editors."""
