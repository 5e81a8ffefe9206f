"""Reports: `edgeq.json` for machines and `report.html` (self-contained, with plots) for people."""
