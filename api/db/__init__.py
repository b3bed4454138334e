"""The users database: `engine` (connections, SQLite pragmas), `models` (tables), `crud` (queries,
admin bootstrap). SQLite file by default, PostgreSQL via DATABASE_URL."""
