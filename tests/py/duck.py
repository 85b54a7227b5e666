"""Run SQL against a Hermes analytics file with the official `duckdb` package, read-only.

usage: duck.py FILE|:memory: SQL [SQL ...]  -> one JSON list of row lists per statement, on stdout.
A statement "@varchar_columns_containing TEXT" counts, per VARCHAR column of every table,
the rows whose value contains TEXT (how the tests look for a leaked secret).
"""
import json
import sys

import duckdb

path, statements = sys.argv[1], sys.argv[2:]
# ":memory:" for statements that read other files (the Parquet exports) and no analytics file.
con = duckdb.connect(path) if path == ":memory:" else duckdb.connect(path, read_only=True)
out = []
for sql in statements:
    if sql.startswith("@varchar_columns_containing "):
        needle = sql.split(" ", 1)[1]
        hits = []
        cols = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'"
        ).fetchall()
        for table, column in cols:
            n = con.execute(
                f'SELECT count(*) FROM "{table}" WHERE contains("{column}", ?)', [needle]
            ).fetchone()[0]
            if n:
                hits.append([table, column, n])
        out.append(hits)
        continue
    out.append([list(row) for row in con.execute(sql).fetchall()])
print(json.dumps(out, default=str))
