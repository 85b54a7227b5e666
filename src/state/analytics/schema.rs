//! The analytics file's tables, created and moved forward by Hermes itself. Each migration runs
//! once, in order, inside a transaction, and is recorded in `schema_migrations`; a file from a
//! newer Hermes (a version this one does not know) is refused rather than guessed at.

use duckdb::Connection;

/// (version, what it does, SQL). Append only: a shipped migration never changes.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "the spec's tables: backends, jobs, backend_performance, backend_selection_history",
        "
        CREATE SEQUENCE backends_id START 1;
        CREATE TABLE backends (
            id INTEGER PRIMARY KEY DEFAULT nextval('backends_id'),
            name VARCHAR UNIQUE NOT NULL,
            backend_type VARCHAR NOT NULL,      -- local, ollama, openrouter, openai, custom, anthropic, sim
            enabled BOOLEAN DEFAULT TRUE,
            is_primary BOOLEAN DEFAULT FALSE,
            config VARCHAR NOT NULL,            -- JSON, never the key
            capabilities VARCHAR,               -- JSON list
            quality_score DOUBLE,
            speed_score DOUBLE,
            cost_score DOUBLE,                  -- 1 = free
            reliability_score DOUBLE,
            health_status VARCHAR DEFAULT 'unknown',
            last_health_check TIMESTAMP,
            consecutive_failures INTEGER DEFAULT 0,
            total_jobs BIGINT DEFAULT 0,
            successful_jobs BIGINT DEFAULT 0,
            failed_jobs BIGINT DEFAULT 0,
            created_date TIMESTAMP DEFAULT current_timestamp,
            updated_date TIMESTAMP DEFAULT current_timestamp
        );
        -- One row per request (id = x-hermes-request-id).
        CREATE TABLE jobs (
            id VARCHAR NOT NULL,
            created_date TIMESTAMP NOT NULL,
            endpoint VARCHAR,
            model_requested VARCHAR,
            job_type VARCHAR,
            job_complexity DOUBLE,
            selection_criteria VARCHAR,
            stream BOOLEAN,
            status INTEGER,
            backend_id INTEGER,
            backend VARCHAR,
            model_used VARCHAR,
            attempts INTEGER,
            response_time_ms DOUBLE,
            time_to_first_token_ms DOUBLE,
            overhead_ms DOUBLE,
            prompt_tokens BIGINT,
            completion_tokens BIGINT,
            cost_cents DOUBLE,
            cache_hit BOOLEAN,
            error_message VARCHAR,
            prompt VARCHAR,                     -- only with HERMES_LOG_CONTENT=true
            response VARCHAR                    -- only with HERMES_LOG_CONTENT=true
        );
        -- One row per attempt. success is NULL when the request itself was at fault (a 4xx)
        -- or the backend was only busy (429): neither says anything about the backend.
        CREATE TABLE backend_performance (
            id BIGINT NOT NULL,
            backend_id INTEGER,
            backend VARCHAR,
            job_id VARCHAR,
            attempt INTEGER,
            response_time_ms DOUBLE,
            time_to_first_token_ms DOUBLE,
            quality_score DOUBLE,               -- from the rating, 0..1
            cost_cents DOUBLE,
            token_count BIGINT,
            job_type VARCHAR,
            job_complexity DOUBLE,
            model_used VARCHAR,
            status INTEGER,
            success BOOLEAN,
            error_message VARCHAR,
            user_satisfaction INTEGER,          -- 1-5, from POST /feedback
            executed_date TIMESTAMP NOT NULL
        );
        CREATE TABLE backend_selection_history (
            id BIGINT NOT NULL,
            job_id VARCHAR NOT NULL,
            selection_criteria VARCHAR,
            available_backends VARCHAR,         -- JSON: the ranked candidates
            selection_reasoning VARCHAR,
            selected_backend_id INTEGER,
            selected_backend VARCHAR,
            confidence_score DOUBLE,
            rejected_backends VARCHAR,          -- JSON: [{backend, reason}]
            rejection_reasons VARCHAR,
            selection_successful BOOLEAN,
            fallback_used BOOLEAN,
            final_backend_id INTEGER,
            final_backend VARCHAR,
            executed_date TIMESTAMP NOT NULL
        );
        ",
    ),
    (
        2,
        "ratings and backend comparisons",
        "
        CREATE TABLE feedback (
            job_id VARCHAR NOT NULL,
            rating INTEGER NOT NULL,
            comment VARCHAR,
            created_date TIMESTAMP NOT NULL
        );
        -- `hermes compare` runs and shadow traffic: the same prompt on several backends.
        CREATE TABLE comparisons (
            comparison_id VARCHAR NOT NULL,
            source VARCHAR NOT NULL,            -- compare, shadow
            job_id VARCHAR,
            prompt VARCHAR,                     -- only with HERMES_LOG_CONTENT=true
            backend VARCHAR NOT NULL,
            model VARCHAR,
            status INTEGER,
            seconds DOUBLE,
            cost_cents DOUBLE,
            answer_chars BIGINT,
            similarity DOUBLE,                  -- shadow: word overlap with the answer the client got
            error_message VARCHAR,
            created_date TIMESTAMP NOT NULL
        );
        ",
    ),
    (
        3,
        "migration steps between backends",
        "
        -- `hermes migrate apply` and `rollback`: every step, its steering and how its checks went.
        CREATE TABLE migration_steps (
            migration_id VARCHAR NOT NULL,
            strategy VARCHAR,
            from_backend VARCHAR,
            to_backend VARCHAR,
            step INTEGER,
            action VARCHAR NOT NULL,
            description VARCHAR,
            outcome VARCHAR,                    -- done, passed, failed, rolled_back
            detail VARCHAR,
            steering VARCHAR,                   -- JSON: the routing overrides after this step
            created_date TIMESTAMP NOT NULL
        );
        ",
    ),
    (
        4,
        "corrections of the classifier's job type",
        "
        -- POST /feedback with job_type: what a person says the job was. features is what the
        -- classifier read (hashed, not the text), for `hermes classifier train --from-db`.
        CREATE TABLE classifier_corrections (
            job_id VARCHAR NOT NULL,
            job_type VARCHAR NOT NULL,
            features VARCHAR,                   -- JSON [[bucket, value], ...]; NULL when no longer known
            created_date TIMESTAMP NOT NULL
        );
        ",
    ),
    (
        5,
        "stored responses of the Responses API; cached and reasoning tokens of each job",
        "
        -- POST /v1/responses with store (the default): what GET /v1/responses/{id} returns and
        -- what previous_response_id continues. owner is a SHA-256 of the client's key, never the key.
        CREATE TABLE responses (
            id VARCHAR PRIMARY KEY,
            owner VARCHAR NOT NULL,
            created_date TIMESTAMP NOT NULL,
            response VARCHAR NOT NULL,          -- the response object, JSON
            conversation VARCHAR NOT NULL       -- the chat messages it continues, JSON
        );
        -- Of prompt_tokens, those read from the provider's cache; of completion_tokens, reasoning.
        ALTER TABLE jobs ADD COLUMN cached_tokens BIGINT;
        ALTER TABLE jobs ADD COLUMN reasoning_tokens BIGINT;
        ",
    ),
    (
        6,
        "virtual keys and teams; each job's key, team and client",
        "
        -- `hermes keys create`: a key's settings and the SHA-256 of its secret, never the secret.
        CREATE TABLE virtual_keys (
            name VARCHAR PRIMARY KEY,
            team VARCHAR,
            digest VARCHAR NOT NULL,
            settings VARCHAR NOT NULL,          -- JSON: budget, window, rpm, tpm, models, privacy, on_budget
            created_date TIMESTAMP NOT NULL,
            revoked_date TIMESTAMP
        );
        CREATE TABLE teams (
            name VARCHAR PRIMARY KEY,
            budget_cents DOUBLE,
            budget_window VARCHAR,
            created_date TIMESTAMP NOT NULL
        );
        -- The virtual key's name and team of a keyed request; client is a SHA-256 of whatever key
        -- the request carried (a rating is taken only from the same client).
        ALTER TABLE jobs ADD COLUMN key_name VARCHAR;
        ALTER TABLE jobs ADD COLUMN team VARCHAR;
        ALTER TABLE jobs ADD COLUMN client VARCHAR;
        ",
    ),
];

pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

pub fn current_version(conn: &Connection) -> duckdb::Result<i32> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL, description VARCHAR, applied_date TIMESTAMP DEFAULT current_timestamp)",
    )?;
    conn.query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0))
}

/// Bring the file up to `target` (normally the latest). Returns the versions applied.
pub fn migrate_to(conn: &Connection, target: i32) -> Result<Vec<i32>, String> {
    let current = current_version(conn).map_err(|e| e.to_string())?;
    if current > latest() {
        return Err(format!("the analytics file is at schema version {current}, newer than this Hermes knows ({}); use a newer Hermes", latest()));
    }
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current && m.0 <= target) {
        let run = || -> duckdb::Result<()> {
            conn.execute_batch("BEGIN TRANSACTION")?;
            conn.execute_batch(sql)?;
            conn.execute("INSERT INTO schema_migrations (version, description) VALUES (?, ?)", duckdb::params![version, description])?;
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = run() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(format!("schema migration {version} ({description}) failed: {e}"));
        }
        log::info!("analytics schema migrated to version {version}: {description}");
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_forward_once_and_in_order() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_to(&conn, 1).unwrap(), vec![1]);
        assert_eq!(current_version(&conn).unwrap(), 1);
        // A file at version 1 gains what came after, and nothing runs twice.
        assert_eq!(migrate_to(&conn, latest()).unwrap(), vec![2, 3, 4, 5, 6]);
        assert!(migrate_to(&conn, latest()).unwrap().is_empty());
        let n: i64 = conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 6);
        for table in [
            "backends",
            "jobs",
            "backend_performance",
            "backend_selection_history",
            "feedback",
            "comparisons",
            "migration_steps",
            "classifier_corrections",
            "responses",
            "virtual_keys",
            "teams",
        ] {
            let _: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap();
        }
    }

    #[test]
    fn a_file_from_a_newer_hermes_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, latest()).unwrap();
        conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", [latest() + 1]).unwrap();
        assert!(migrate_to(&conn, latest()).unwrap_err().contains("newer"));
    }
}
