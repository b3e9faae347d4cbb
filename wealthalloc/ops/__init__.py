"""Operating the platform: the tools behind backups, restore drills and alert-rule checks."""
