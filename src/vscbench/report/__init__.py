"""Reports stage: terminal table, Markdown, LaTeX, CSV/JSON, one-file HTML, plots."""
