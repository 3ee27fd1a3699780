"""Reports: Markdown tables, machine headers and PNG figures."""
