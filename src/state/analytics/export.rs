//! The analytics tables as Parquet files (`hermes export`, `POST /admin/export`): one file per
//! table in a folder, so that the files of every replica can be queried together (each replica
//! writes its own DuckDB file).

use duckdb::Connection;
use std::path::Path;

/// What is exported: everything but stored conversations of the Responses API (they are
/// clients' content, kept only for `previous_response_id`).
pub const TABLES: &[&str] = &[
    "jobs",
    "backends",
    "backend_performance",
    "backend_selection_history",
    "feedback",
    "comparisons",
    "migration_steps",
    "classifier_corrections",
    "virtual_keys",
    "teams",
];

/// Writes `<dir>/<table>.parquet` for every table; the rows of each.
pub fn to_parquet(conn: &Connection, dir: &Path) -> Result<Vec<(String, u64)>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for table in TABLES {
        let path = dir.join(format!("{table}.parquet"));
        let quoted = path.display().to_string().replace('\'', "''");
        conn.execute_batch(&format!("COPY {table} TO '{quoted}' (FORMAT parquet)")).map_err(|e| format!("{table}: {e}"))?;
        let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).map_err(|e| format!("{table}: {e}"))?;
        written.push((table.to_string(), rows.max(0) as u64));
    }
    Ok(written)
}

/// The same from a file no gateway has open.
pub fn file_to_parquet(db: &Path, dir: &Path) -> Result<Vec<(String, u64)>, String> {
    if !db.exists() {
        return Err(format!("{}: no such analytics file", db.display()));
    }
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).map_err(|e| e.to_string())?;
    let conn = Connection::open_with_flags(db, config).map_err(|e| format!("{}: {e}", db.display()))?;
    to_parquet(&conn, dir)
}
