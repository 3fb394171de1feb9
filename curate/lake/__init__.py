"""The lake: DuckLake catalog and tables (catalog.Lake), table declarations, facts kept at commit,
views, migrations and the DuckDB extensions. Every SQL statement of curate lives here."""
