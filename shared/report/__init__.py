"""A batch's results for people and machines: gathered from state (collect), per-model
statistics (stats), table/JSON/CSV/Markdown/seed exports (exports) and the HTML report (html)."""
