//! The results database (DuckDB): schema and migrations, the single writer, and the sample
//! ingest path shared by `sense`, runs and the ingest benchmark.
//!
//! One process writes at a time and holds the file only while it records; it leaves a small
//! `<db>.writer.json` beside the file saying who holds it, so that a second process that finds the
//! file locked can say which process and what it is doing. A holder file found by the next
//! writer is one that died without closing: what it left `running` is marked `aborted` then.
//! A run's start is committed before its board is prompted ([`COMMITS`]).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{
        mpsc::{self, Receiver},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use duckdb::{params, Connection};

pub use crate::records::{Record, SampleRow, TokenRow};
use serde::{Deserialize, Serialize};

/// The writer's DuckDB buffer pool while it ingests, and after ([`Store::after_ingest`]).
const WRITER_MEMORY: &str = "16MB";
const AFTER_INGEST_MEMORY: &str = "512MB";

/// The schema this labctl writes. Files at a lower version are migrated on open; files at a
/// higher version are refused.
pub const SCHEMA_VERSION: i32 = 7;

/// Migration `i` takes a file from version `i` to `i + 1`. A new file runs all of them, so a fresh
/// file and a migrated one have the same layout (column order matters to the Appender).
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first released schema.
    r#"
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        board VARCHAR NOT NULL,
        platform VARCHAR,
        profile VARCHAR,
        model VARCHAR,
        quant VARCHAR,
        prompt_tokens INTEGER,
        gen_tokens INTEGER,
        status VARCHAR NOT NULL,
        error VARCHAR,
        simulated BOOLEAN NOT NULL,
        labctl_version VARCHAR,
        firmware_version VARCHAR,
        plugin_version VARCHAR
    );
    CREATE TABLE tokens (
        run_id VARCHAR NOT NULL,
        idx INTEGER NOT NULL,
        phase VARCHAR NOT NULL,
        t_us BIGINT NOT NULL,
        cycles BIGINT
    );
    CREATE TABLE power_samples (
        run_id VARCHAR,
        sensor VARCHAR NOT NULL,
        board VARCHAR,
        t_us BIGINT NOT NULL,
        bus_mv DOUBLE,
        shunt_uv DOUBLE,
        current_ma DOUBLE,
        power_mw DOUBLE,
        simulated BOOLEAN NOT NULL
    );
    "#,
    // 1 → 2: sense sessions, memory and operator breakdown, and the run_summary view.
    r#"
    ALTER TABLE power_samples ADD COLUMN session_id VARCHAR;
    CREATE TABLE sense_sessions (
        session_id VARCHAR PRIMARY KEY,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        sensors VARCHAR,
        rate_hz DOUBLE,
        samples BIGINT,
        missed BIGINT,
        status VARCHAR,
        error VARCHAR,
        simulated BOOLEAN
    );
    CREATE TABLE run_memory (
        run_id VARCHAR PRIMARY KEY,
        static_ram_bytes BIGINT,
        heap_peak_bytes BIGINT,
        stack_peak_bytes BIGINT,
        model_bytes BIGINT,
        flash_bytes BIGINT
    );
    CREATE TABLE run_ops (
        run_id VARCHAR NOT NULL,
        op VARCHAR NOT NULL,
        cycles BIGINT,
        calls BIGINT
    );
    CREATE VIEW run_summary AS
    WITH dec AS (
        SELECT run_id, t_us,
               t_us - lag(t_us) OVER (PARTITION BY run_id ORDER BY idx) AS gap_us
        FROM tokens WHERE phase = 'decode'
    ),
    tok AS (
        SELECT run_id,
               min(t_us) / 1000.0 AS ttft_ms,
               quantile_cont(gap_us, 0.5) / 1000.0 AS itl_p50_ms,
               quantile_cont(gap_us, 0.9) / 1000.0 AS itl_p90_ms,
               quantile_cont(gap_us, 0.99) / 1000.0 AS itl_p99_ms,
               CASE WHEN count(*) > 1 AND max(t_us) > min(t_us)
                    THEN (count(*) - 1) * 1e6 / (max(t_us) - min(t_us)) END AS tokens_per_s,
               count(*) AS decode_tokens,
               min(t_us) AS dec_start,
               max(t_us) AS dec_end
        FROM dec GROUP BY run_id
    ),
    e2e AS (SELECT run_id, max(t_us) AS end_us FROM tokens GROUP BY run_id),
    pw AS (
        SELECT run_id, t_us, power_mw,
               lag(t_us) OVER w AS prev_t,
               lag(power_mw) OVER w AS prev_p
        FROM power_samples WHERE run_id IS NOT NULL
        WINDOW w AS (PARTITION BY run_id, sensor ORDER BY t_us)
    ),
    en AS (
        SELECT pw.run_id,
               avg(pw.power_mw) FILTER (WHERE pw.t_us BETWEEN 0 AND e2e.end_us) AS avg_power_mw,
               max(pw.power_mw) FILTER (WHERE pw.t_us BETWEEN 0 AND e2e.end_us) AS peak_power_mw,
               sum((pw.power_mw + pw.prev_p) / 2 * (pw.t_us - pw.prev_t))
                   FILTER (WHERE pw.prev_t >= 0 AND pw.t_us <= e2e.end_us) / 1e6 AS energy_mj,
               sum((pw.power_mw + pw.prev_p) / 2 * (pw.t_us - pw.prev_t))
                   FILTER (WHERE pw.prev_t >= tok.dec_start AND pw.t_us <= tok.dec_end) / 1e6
                   AS decode_energy_mj
        FROM pw JOIN e2e USING (run_id) LEFT JOIN tok USING (run_id)
        GROUP BY pw.run_id
    )
    SELECT r.run_id, r.board, r.platform, r.profile, r.model, r.quant,
           tok.ttft_ms, tok.itl_p50_ms, tok.itl_p90_ms, tok.itl_p99_ms, tok.tokens_per_s,
           e2e.end_us / 1000.0 AS e2e_ms,
           en.avg_power_mw, en.peak_power_mw, en.energy_mj,
           en.decode_energy_mj / nullif(tok.decode_tokens - 1, 0) AS energy_per_token_mj,
           (m.static_ram_bytes + m.heap_peak_bytes + m.stack_peak_bytes) / 1024.0 AS ram_peak_kb,
           m.flash_bytes / 1024.0 AS flash_kb,
           r.simulated
    FROM runs r
    LEFT JOIN tok USING (run_id)
    LEFT JOIN e2e USING (run_id)
    LEFT JOIN en USING (run_id)
    LEFT JOIN run_memory m USING (run_id);
    "#,
    // 2 → 3: profiling runs in full: how a run was timed and aligned, raw token fields, the
    // simulated rails' ground truth, and quantization accuracy.
    r#"
    ALTER TABLE runs ADD COLUMN batch_id VARCHAR;
    ALTER TABLE runs ADD COLUMN repeat_idx INTEGER;
    ALTER TABLE runs ADD COLUMN prompt VARCHAR;
    ALTER TABLE runs ADD COLUMN timing_source VARCHAR;
    ALTER TABLE runs ADD COLUMN clock_hz BIGINT;
    ALTER TABLE runs ADD COLUMN align_offset_us DOUBLE;
    ALTER TABLE runs ADD COLUMN align_err_us DOUBLE;
    ALTER TABLE runs ADD COLUMN garbage_bytes BIGINT;
    ALTER TABLE runs ADD COLUMN bad_frames BIGINT;
    ALTER TABLE runs ADD COLUMN mqtt_undelivered_msgs BIGINT;
    ALTER TABLE runs ADD COLUMN mqtt_undelivered_samples BIGINT;
    ALTER TABLE tokens ADD COLUMN token_id INTEGER;
    ALTER TABLE tokens ADD COLUMN board_us BIGINT;
    ALTER TABLE tokens ADD COLUMN host_rx_us BIGINT;
    CREATE TABLE rail_truth (
        run_id VARCHAR NOT NULL,
        board VARCHAR,
        t_us DOUBLE NOT NULL,
        bus_mv DOUBLE,
        current_ma DOUBLE
    );
    CREATE TABLE quant_accuracy (
        validated_at TIMESTAMP,
        batch_id VARCHAR,
        model VARCHAR,
        quant VARCHAR,
        reference VARCHAR,
        prompt_tokens INTEGER,
        positions INTEGER,
        top1_agreement DOUBLE,
        mean_kl DOUBLE
    );
    -- Energy integrates the trapezoids between consecutive samples, clipped to the interval
    -- (whole run, or first to last decode token), so short decodes between two samples count.
    CREATE OR REPLACE VIEW run_summary AS
    WITH dec AS (
        SELECT run_id, t_us,
               t_us - lag(t_us) OVER (PARTITION BY run_id ORDER BY idx) AS gap_us
        FROM tokens WHERE phase = 'decode'
    ),
    tok AS (
        SELECT run_id,
               min(t_us) / 1000.0 AS ttft_ms,
               quantile_cont(gap_us, 0.5) / 1000.0 AS itl_p50_ms,
               quantile_cont(gap_us, 0.9) / 1000.0 AS itl_p90_ms,
               quantile_cont(gap_us, 0.99) / 1000.0 AS itl_p99_ms,
               CASE WHEN count(*) > 1 AND max(t_us) > min(t_us)
                    THEN (count(*) - 1) * 1e6 / (max(t_us) - min(t_us)) END AS tokens_per_s,
               count(*) AS decode_tokens,
               min(t_us) AS dec_start,
               max(t_us) AS dec_end
        FROM dec GROUP BY run_id
    ),
    e2e AS (SELECT run_id, max(t_us) AS end_us FROM tokens GROUP BY run_id),
    pw AS (
        SELECT run_id, t_us, power_mw,
               lag(t_us) OVER w AS prev_t,
               lag(power_mw) OVER w AS prev_p
        FROM power_samples WHERE run_id IS NOT NULL
        WINDOW w AS (PARTITION BY run_id, sensor ORDER BY t_us)
    ),
    en AS (
        SELECT pw.run_id,
               avg(pw.power_mw) FILTER (WHERE pw.t_us BETWEEN 0 AND e2e.end_us) AS avg_power_mw,
               max(pw.power_mw) FILTER (WHERE pw.t_us BETWEEN 0 AND e2e.end_us) AS peak_power_mw,
               sum((pw.power_mw + pw.prev_p) / 2
                   * greatest(0, least(pw.t_us, e2e.end_us) - greatest(pw.prev_t, 0))) / 1e6
                   AS energy_mj,
               sum((pw.power_mw + pw.prev_p) / 2
                   * greatest(0, least(pw.t_us, tok.dec_end) - greatest(pw.prev_t, tok.dec_start)))
                   / 1e6 AS decode_energy_mj
        FROM pw JOIN e2e USING (run_id) LEFT JOIN tok USING (run_id)
        GROUP BY pw.run_id
    )
    SELECT r.run_id, r.board, r.platform, r.profile, r.model, r.quant,
           tok.ttft_ms, tok.itl_p50_ms, tok.itl_p90_ms, tok.itl_p99_ms, tok.tokens_per_s,
           e2e.end_us / 1000.0 AS e2e_ms,
           en.avg_power_mw, en.peak_power_mw, en.energy_mj,
           en.decode_energy_mj / nullif(tok.decode_tokens - 1, 0) AS energy_per_token_mj,
           (m.static_ram_bytes + m.heap_peak_bytes + m.stack_peak_bytes) / 1024.0 AS ram_peak_kb,
           m.flash_bytes / 1024.0 AS flash_kb,
           r.simulated
    FROM runs r
    LEFT JOIN tok USING (run_id)
    LEFT JOIN e2e USING (run_id)
    LEFT JOIN en USING (run_id)
    LEFT JOIN run_memory m USING (run_id);
    "#,
    // 3 → 4: real benches: a machine-readable reason beside `error`, and which model the host
    // named (SHA-256 of its file) and the board held (the CRC-32 it reported in `MODEL`).
    r#"
    ALTER TABLE runs ADD COLUMN reason_code VARCHAR;
    ALTER TABLE runs ADD COLUMN model_sha256 VARCHAR;
    ALTER TABLE runs ADD COLUMN board_model_crc32 VARCHAR;
    CREATE TABLE board_events (
        recorded_at TIMESTAMP NOT NULL,
        batch_id VARCHAR,
        board VARCHAR NOT NULL,
        state VARCHAR NOT NULL,
        run_id VARCHAR,
        reason VARCHAR,
        reason_code VARCHAR
    );
    "#,
    // 4 → 5: real models: where an imported model came from, its tokenizer, the prompt's ids,
    // and the text generated (per run and per token).
    r#"
    ALTER TABLE runs ADD COLUMN model_format VARCHAR;
    ALTER TABLE runs ADD COLUMN model_source VARCHAR;
    ALTER TABLE runs ADD COLUMN model_source_sha256 VARCHAR;
    ALTER TABLE runs ADD COLUMN tokenizer VARCHAR;
    ALTER TABLE runs ADD COLUMN prompt_ids VARCHAR;
    ALTER TABLE runs ADD COLUMN output_text VARCHAR;
    ALTER TABLE tokens ADD COLUMN piece VARCHAR;
    "#,
    // 5 → 6: the board's temperature at each prompt's start and end (`TEMP` frames).
    r#"
    ALTER TABLE runs ADD COLUMN temp_start_c DOUBLE;
    ALTER TABLE runs ADD COLUMN temp_end_c DOUBLE;
    "#,
    // 6 → 7: each run's manifest (what ran it) and, once its batch ends, checksums over its
    // tokens and samples (`labctl verify`).
    r#"
    CREATE TABLE run_manifests (
        run_id VARCHAR NOT NULL,
        labctl_version VARCHAR,
        toolchain VARCHAR,
        firmware VARCHAR,
        firmware_sha256 VARCHAR,
        model_sha256 VARCHAR,
        board_serial VARCHAR,
        sensor VARCHAR,
        sealed_at TIMESTAMP,
        tokens BIGINT,
        tokens_sha256 VARCHAR,
        samples BIGINT,
        samples_sha256 VARCHAR
    );
    "#,
];

/// Each run's tokens as one checksum: every column of every row in a fixed order and format.
/// `seal` stores it, `labctl verify` recomputes it; `{runs}` selects the runs.
pub const TOKENS_DIGEST: &str =
    "SELECT run_id, count(*) AS n, sha256(string_agg(concat_ws(',', idx, phase, t_us, \
     coalesce(cycles::VARCHAR, ''), token_id, board_us, host_rx_us, coalesce(piece, '')), ';' \
     ORDER BY phase, idx, t_us)) AS h FROM tokens WHERE rowid > {floor} AND run_id IN ({runs}) GROUP BY run_id";

/// The same for a run's power samples.
pub const SAMPLES_DIGEST: &str = "SELECT run_id, count(*) AS n, sha256(string_agg(concat_ws(',', sensor, t_us, bus_mv, \
     shunt_uv, current_ma, power_mw), ';' ORDER BY sensor, t_us, bus_mv, shunt_uv, current_ma)) AS h \
     FROM power_samples WHERE rowid > {floor} AND run_id IN ({runs}) GROUP BY run_id";

/// Both checksums of the runs `{runs}` selects: (run_id, tokens, tokens_sha256, samples,
/// samples_sha256), a run without rows of a kind giving 0 and the checksum of nothing. Only rows
/// after `floors` (the tables' largest rowids before the runs began; -1: all) are read.
pub fn digests_sql(runs: &str, floors: (i64, i64)) -> String {
    format!(
        "SELECT m.run_id, coalesce(t.n, 0) AS tn, coalesce(t.h, sha256('')) AS th, \
         coalesce(s.n, 0) AS sn, coalesce(s.h, sha256('')) AS sh FROM run_manifests m \
         LEFT JOIN ({}) t USING (run_id) LEFT JOIN ({}) s USING (run_id) WHERE m.run_id IN ({runs})",
        TOKENS_DIGEST
            .replace("{runs}", runs)
            .replace("{floor}", &floors.0.to_string()),
        SAMPLES_DIGEST
            .replace("{runs}", runs)
            .replace("{floor}", &floors.1.to_string())
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("results database {path} is in use by another process{holder}; it is free again when that finishes")]
    Busy { path: PathBuf, holder: String },
    #[error("results database {path} has schema version {found}, newer than this labctl understands ({SCHEMA_VERSION}); use a newer labctl or another --db/[storage] path")]
    TooNew { path: PathBuf, found: i32 },
    #[error("results database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: duckdb::Error,
    },
    #[error("results database {path}: {message}")]
    Other { path: PathBuf, message: String },
}

/// Who holds the database for writing (the `<db>.writer.json` beside it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub activity: String,
    pub since_unix_ms: u64,
    /// Set when the writer stopped because the database could not be written (disk full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

fn holder_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".writer.json");
    PathBuf::from(s)
}

pub fn describe_holder(db: &Path) -> String {
    match std::fs::read_to_string(holder_path(db))
        .ok()
        .and_then(|s| serde_json::from_str::<Holder>(&s).ok())
    {
        Some(h) => {
            let secs = crate::clock::unix_ms().saturating_sub(h.since_unix_ms) / 1000;
            format!(" (labctl pid {}, {} for {secs} s)", h.pid, h.activity)
        }
        None => String::new(),
    }
}

/// The writer's connection to the results database.
pub struct Store {
    pub conn: Connection,
    pub path: PathBuf,
    /// Why writing failed, if it did: kept in the holder file for the next writer.
    failure: Mutex<Option<String>>,
}

impl Store {
    /// Opens (creating and migrating as needed) for writing; `activity` is shown to other
    /// processes that find the file held.
    pub fn open(path: &Path, activity: &str) -> Result<Store, StoreError> {
        Self::open_at(path, activity, SCHEMA_VERSION)
    }

    /// Like [`Store::open`] but migrating only up to `target` (tests build older files with it).
    pub fn open_at(path: &Path, activity: &str, target: i32) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Other {
                path: path.to_path_buf(),
                message: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        // The writer only appends and runs small queries: one DuckDB thread is enough, and each
        // worker thread costs memory on a Pi.
        // A smaller WAL before each checkpoint than DuckDB's 16 MB (the rows appended since the
        // last checkpoint are held in memory too), and a buffer pool of 16 MB instead of 80 % of
        // the machine's RAM (DuckDB keeps every block it wrote cached up to its limit): without
        // them a long run's resident memory grows with the database (tests/soak.rs).
        let conn = duckdb::Config::default()
            .threads(1)
            .and_then(|cfg| cfg.with("checkpoint_threshold", "4MB"))
            .and_then(|cfg| cfg.with("memory_limit", WRITER_MEMORY))
            .and_then(|cfg| Connection::open_with_flags(path, cfg))
            .map_err(|e| {
                let msg = e.to_string();
                if msg.contains("lock") || msg.contains("Conflicting") {
                    StoreError::Busy {
                        path: path.to_path_buf(),
                        holder: describe_holder(path),
                    }
                } else {
                    StoreError::Db {
                        path: path.to_path_buf(),
                        source: e,
                    }
                }
            })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            failure: Mutex::new(None),
        };
        store.migrate(target)?;
        // We hold the only write lock: a holder file still there is a writer that died without
        // closing (kill -9, power loss), and what it left `running` was cut off there.
        let stale = std::fs::read_to_string(holder_path(path))
            .ok()
            .and_then(|s| serde_json::from_str::<Holder>(&s).ok());
        // (Files kept at an older schema for tests have none of the columns it sets.)
        if target == SCHEMA_VERSION {
            store.close_orphans(stale.as_ref())?;
        }
        let holder = Holder {
            pid: std::process::id(),
            activity: activity.to_string(),
            since_unix_ms: crate::clock::unix_ms(),
            failed: None,
        };
        if let Ok(s) = serde_json::to_string(&holder) {
            let _ = std::fs::write(holder_path(path), s);
        }
        Ok(store)
    }

    /// Marks the runs and sensing sessions a dead writer left `running` as `aborted`
    /// (`host-crashed`), naming its pid where its holder file says it.
    fn close_orphans(&self, stale: Option<&Holder>) -> Result<(), StoreError> {
        let (status, code, why) = match stale {
            Some(Holder {
                failed: Some(f),
                pid,
                ..
            }) => ("error", "storage", format!("{f} (labctl pid {pid})")),
            Some(h) => (
                "aborted",
                "host-crashed",
                format!(
                    "labctl stopped without closing the run (pid {}, {})",
                    h.pid, h.activity
                ),
            ),
            None => (
                "aborted",
                "host-crashed",
                "labctl stopped without closing the run (pid unknown)".to_string(),
            ),
        };
        let err = self.db_err();
        let runs = self
            .conn
            .execute(
                "UPDATE runs SET status = ?, reason_code = ?, error = ?, \
                 finished_at = coalesce(finished_at, current_timestamp) WHERE status = 'running'",
                params![status, code, why],
            )
            .map_err(&err)?;
        let sessions = self
            .conn
            .execute(
                "UPDATE sense_sessions SET status = 'aborted', error = ?, \
                 finished_at = coalesce(finished_at, current_timestamp) WHERE status = 'running'",
                params![why],
            )
            .map_err(&err)?;
        if runs + sessions > 0 {
            tracing::warn!(runs, sessions, "{why}: marked aborted");
        }
        Ok(())
    }

    /// The largest rowids of `tokens` and `power_samples` now: a batch's rows all lie above
    /// them, so sealing it reads only them.
    pub fn floors(&self) -> (i64, i64) {
        let max = |t: &str| {
            self.conn
                .query_row(
                    &format!("SELECT coalesce(max(rowid), -1) FROM {t}"),
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(-1)
        };
        (max("tokens"), max("power_samples"))
    }

    /// Seals the manifests of `batch`'s runs: the checksums of their tokens and samples, once
    /// everything of the batch is stored (rows above `floors`).
    pub fn seal(&self, batch: &str, floors: (i64, i64)) -> Result<usize, StoreError> {
        let runs = "SELECT run_id FROM runs WHERE batch_id = ?";
        let sql = format!(
            "UPDATE run_manifests SET sealed_at = current_timestamp, tokens = d.tn, tokens_sha256 = d.th, \
             samples = d.sn, samples_sha256 = d.sh FROM ({}) d WHERE run_manifests.run_id = d.run_id",
            digests_sql(runs, floors)
        );
        self.conn
            .execute(&sql, params![batch, batch, batch])
            .map_err(self.db_err())
    }

    /// Lets the writer use more memory from now on, for what comes after ingest (sealing,
    /// validation, the summary): ingest itself keeps the small pool that holds a long run's
    /// memory flat.
    pub fn after_ingest(&self) {
        let _ = self
            .conn
            .execute_batch(&format!("SET memory_limit = '{AFTER_INGEST_MEMORY}'"));
    }

    /// Writes one record at once (outside the ingest stream: before or after it).
    pub fn write(&self, r: &Record) -> Result<(), StoreError> {
        write_record(&self.conn, r).map_err(self.db_err())
    }

    fn db_err(&self) -> impl Fn(duckdb::Error) -> StoreError + '_ {
        |source| StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    pub fn schema_version(&self) -> Result<i32, StoreError> {
        let exists: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM information_schema.tables WHERE table_name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(self.db_err())?;
        if !exists {
            return Ok(0);
        }
        self.conn
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(self.db_err())
    }

    fn migrate(&self, target: i32) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
            });
        }
        if found >= target {
            return Ok(());
        }
        // All steps in one transaction: a failed migration leaves the file as it was.
        let mut sql = String::from("BEGIN TRANSACTION;\n");
        if found == 0 {
            sql.push_str(
                "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL, labctl_version VARCHAR);\n",
            );
        }
        for v in found..target {
            sql.push_str(MIGRATIONS[v as usize]);
            sql.push_str(&format!(
                "\nINSERT INTO schema_version VALUES ({}, current_timestamp, '{}');\n",
                v + 1,
                env!("CARGO_PKG_VERSION")
            ));
        }
        sql.push_str("COMMIT;");
        if let Err(e) = self.conn.execute_batch(&sql) {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(StoreError::Db {
                path: self.path.clone(),
                source: e,
            });
        }
        if found > 0 {
            tracing::info!(path = %self.path.display(), from = found, to = target, "migrated results database");
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let failed = self.failure.lock().ok().and_then(|f| f.clone());
        match failed {
            None => {
                let _ = std::fs::remove_file(holder_path(&self.path));
            }
            // The runs left `running` are closed by the next writer, with this reason (if the
            // file can still be written; else they are closed as cut off).
            Some(why) => {
                let h = Holder {
                    pid: std::process::id(),
                    activity: "writing".into(),
                    since_unix_ms: crate::clock::unix_ms(),
                    failed: Some(why),
                };
                if let Ok(s) = serde_json::to_string(&h) {
                    let _ = std::fs::write(holder_path(&self.path), s);
                }
            }
        }
    }
}

/// Appends one sample to a `power_samples` appender (column order of the table).
pub fn append_sample(app: &mut duckdb::Appender<'_>, s: &SampleRow) -> duckdb::Result<()> {
    app.append_row(params![
        s.run_id.as_deref(),
        &*s.sensor,
        s.board.as_deref(),
        s.t_us,
        s.bus_mv,
        s.shunt_uv,
        s.current_ma,
        s.power_mw,
        s.simulated,
        s.session_id.as_deref(),
    ])
}

/// What producers send the single writer.
pub enum Rec {
    Samples(Vec<SampleRow>),
    Tokens(Vec<TokenRow>),
    /// A fact of a run or a board; written after everything sent before it is flushed, so it
    /// can refer to it.
    Run(Box<Record>),
}

/// Writes one run record as rows: the only place run SQL lives.
pub fn write_record(c: &Connection, r: &Record) -> duckdb::Result<()> {
    match r {
        Record::Start(v) => c
            .execute(
                "INSERT INTO runs (run_id, started_at, board, platform, profile, model, quant, prompt_tokens, gen_tokens, status, simulated, labctl_version, plugin_version, batch_id, repeat_idx, prompt, timing_source, clock_hz, model_sha256, \
                 model_format, model_source, model_source_sha256, tokenizer, prompt_ids) \
                 VALUES (?, current_timestamp, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![&*v.run_id, v.board, v.platform, v.profile, v.model, v.quant, v.prompt_tokens, v.gen_tokens,
                        v.simulated, env!("CARGO_PKG_VERSION"), v.plugin_version, v.batch_id, v.repeat_idx, v.prompt,
                        v.timing_source, v.clock_hz, v.model_sha256, v.model_format, v.model_source,
                        v.model_source_sha256, v.tokenizer, v.prompt_ids],
            )
            .map(|_| ()),
        Record::Firmware {
            run_id,
            firmware_version,
            board_model_crc32,
        } => c
            .execute(
                "UPDATE runs SET firmware_version = ?, board_model_crc32 = ? WHERE run_id = ?",
                params![firmware_version, board_model_crc32, &**run_id],
            )
            .map(|_| ()),
        Record::End(e) => c
            .execute(
                "UPDATE runs SET finished_at = current_timestamp, status = ?, error = ?, reason_code = ?, \
                 gen_tokens = coalesce(?, gen_tokens), align_offset_us = ?, align_err_us = ?, \
                 garbage_bytes = ?, bad_frames = ?, output_text = coalesce(?, output_text), \
                 temp_start_c = ?, temp_end_c = ? WHERE run_id = ?",
                params![e.status, e.error, e.reason_code, e.gen_tokens, e.align_offset_us, e.align_err_us,
                        e.garbage_bytes, e.bad_frames, e.output_text, e.temp_start_c, e.temp_end_c, &*e.run_id],
            )
            .map(|_| ()),
        Record::Ops { run_id, ops } => {
            for (op, cyc) in ops {
                c.execute(
                    "INSERT INTO run_ops VALUES (?, ?, ?, NULL)",
                    params![&**run_id, op, cyc],
                )?;
            }
            Ok(())
        }
        Record::Manifest(m) => c
            .execute(
                "INSERT INTO run_manifests (run_id, labctl_version, toolchain, firmware, firmware_sha256, model_sha256, board_serial, sensor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![&*m.run_id, env!("CARGO_PKG_VERSION"), env!("LABCTL_RUSTC_VERSION"), m.firmware,
                        m.firmware_sha256, m.model_sha256, m.board_serial, m.sensor],
            )
            .map(|_| ()),
        Record::Memory {
            run_id,
            static_ram,
            heap_peak,
            stack_peak,
            model,
            flash,
        } => c
            .execute(
                "INSERT INTO run_memory VALUES (?, ?, ?, ?, ?, ?)",
                params![&**run_id, static_ram, heap_peak, stack_peak, model, flash],
            )
            .map(|_| ()),
        Record::RailTruth {
            run_id,
            board,
            points,
        } => {
            let mut app = c.appender("rail_truth")?;
            for (t, mv, ma) in points {
                app.append_row(params![&**run_id, board, t, mv, ma])?;
            }
            app.flush()
        }
        Record::Undelivered {
            run_id,
            messages,
            samples,
        } => c
            .execute(
                "UPDATE runs SET mqtt_undelivered_msgs = ?, mqtt_undelivered_samples = ? WHERE run_id = ?",
                params![messages, samples, &**run_id],
            )
            .map(|_| ()),
        Record::QuantAccuracy {
            batch_id,
            model,
            quant,
            prompt_tokens,
            positions,
            top1,
            mean_kl,
        } => c
            .execute(
                "INSERT INTO quant_accuracy VALUES (current_timestamp, ?, ?, ?, 'f32', ?, ?, ?, ?)",
                params![batch_id, model, quant, prompt_tokens, positions, top1, mean_kl],
            )
            .map(|_| ()),
        Record::SenseStart {
            session_id,
            sensors,
            rate_hz,
            simulated,
        } => c
            .execute(
                "INSERT INTO sense_sessions VALUES (?, current_timestamp, NULL, ?, ?, 0, 0, 'running', NULL, ?)",
                params![&**session_id, sensors, rate_hz, simulated],
            )
            .map(|_| ()),
        Record::SenseEnd {
            session_id,
            samples,
            missed,
            status,
            error,
        } => c
            .execute(
                "UPDATE sense_sessions SET finished_at = current_timestamp, samples = ?, missed = ?, status = ?, error = ? WHERE session_id = ?",
                params![samples, missed, status, error, &**session_id],
            )
            .map(|_| ()),
        Record::BoardEvent(e) => c
            .execute(
                "INSERT INTO board_events VALUES (make_timestamp(?), ?, ?, ?, ?, ?, ?)",
                params![e.at_unix_us, e.batch_id, e.board, e.state.name(), e.run_id.as_deref(), e.reason, e.reason_code],
            )
            .map(|_| ()),
    }
}

impl From<Vec<SampleRow>> for Rec {
    fn from(v: Vec<SampleRow>) -> Rec {
        Rec::Samples(v)
    }
}

/// The runs whose `running` row the writer has committed: a board prompts only once its run's
/// start is in the database, so that a crash of labctl mid-run always leaves the run's row.
pub struct Commits {
    set: Mutex<BTreeSet<Arc<str>>>,
    cv: Condvar,
    /// The writer failed (disk full, I/O error): why. Nothing will be committed any more.
    failed: Mutex<Option<String>>,
}

/// The process's writer tells [`COMMITS`] (one writer per database, one database per process).
pub static COMMITS: Commits = Commits {
    set: Mutex::new(BTreeSet::new()),
    cv: Condvar::new(),
    failed: Mutex::new(None),
};

/// Why the results database can take no more writes, once the writer has failed.
pub fn writer_failure() -> Option<String> {
    COMMITS.failed.lock().ok().and_then(|f| f.clone())
}

impl Commits {
    /// A new writer starts: a failure of an earlier one (a previous `serve` job's) is over.
    fn clear_failure(&self) {
        if let Ok(mut f) = self.failed.lock() {
            *f = None;
        }
    }

    /// The writer has stopped for good: waiters are woken and told.
    fn fail(&self, why: &str) {
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert_with(|| why.to_string());
        }
        self.cv.notify_all();
    }

    fn mark(&self, run_id: &Arc<str>) {
        if let Ok(mut s) = self.set.lock() {
            s.insert(run_id.clone());
        }
        self.cv.notify_all();
    }

    fn forget(&self, run_id: &str) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(run_id);
        }
    }

    /// Waits until `run_id`'s start is committed; false after `timeout` (the writer is stuck:
    /// the run goes ahead and the writer's error is reported by it).
    pub fn wait(&self, run_id: &str, timeout: Duration) -> bool {
        let Ok(guard) = self.set.lock() else {
            return false;
        };
        self.cv
            .wait_timeout_while(guard, timeout, |s| {
                !s.contains(run_id) && writer_failure().is_none()
            })
            .map(|(s, t)| !t.timed_out() && s.contains(run_id))
            .unwrap_or(false)
    }
}

/// What [`ingest`] stored.
#[derive(Debug, Default, Clone)]
pub struct Ingested {
    pub samples: u64,
    pub tokens: u64,
    /// Statements that failed (the rest of the data is still stored).
    pub exec_errors: Vec<String>,
}

/// The single writer: appends batches from `rx` until every sender is gone, flushing at least
/// every `flush_every` so that an interruption loses at most that much. `on_rec` sees each
/// record after it is stored, and `None` when `flush_every` passes without one (live display).
/// A writer that fails (disk full) says so to every board waiting on it ([`writer_failure`]) and
/// to the next labctl that opens the database (its holder file keeps the reason).
pub fn ingest<M: Into<Rec>>(
    store: &Store,
    rx: &Receiver<M>,
    flush_every: Duration,
    on_rec: impl FnMut(Option<&Rec>),
) -> Result<Ingested, StoreError> {
    COMMITS.clear_failure();
    let r = ingest_rows(store, rx, flush_every, on_rec);
    if let Err(e) = &r {
        let why = format!("the results database could not be written: {e}");
        COMMITS.fail(&why);
        if let Ok(mut f) = store.failure.lock() {
            *f = Some(why);
        }
    }
    r
}

/// The single writer: appends batches from `rx` until every sender is gone, flushing at least
/// every `flush_every` so that an interruption loses at most that much. `on_rec` sees each
/// record after it is stored, and `None` when `flush_every` passes without one (live display).
fn ingest_rows<M: Into<Rec>>(
    store: &Store,
    rx: &Receiver<M>,
    flush_every: Duration,
    mut on_rec: impl FnMut(Option<&Rec>),
) -> Result<Ingested, StoreError> {
    let err = store.db_err();
    let mut samples = store.conn.appender("power_samples").map_err(&err)?;
    let mut tokens = store.conn.appender("tokens").map_err(&err)?;
    let mut done = Ingested::default();
    let mut last_flush = Instant::now();
    loop {
        match rx.recv_timeout(flush_every) {
            Ok(m) => {
                let rec = m.into();
                match &rec {
                    Rec::Samples(batch) => {
                        for s in batch {
                            append_sample(&mut samples, s).map_err(&err)?;
                        }
                        done.samples += batch.len() as u64;
                    }
                    Rec::Tokens(batch) => {
                        for t in batch {
                            tokens
                                .append_row(params![
                                    &*t.run_id,
                                    t.idx,
                                    t.phase,
                                    t.t_us,
                                    t.cycles,
                                    t.token_id,
                                    t.board_us,
                                    t.host_rx_us,
                                    t.piece,
                                ])
                                .map_err(&err)?;
                        }
                        done.tokens += batch.len() as u64;
                    }
                    Rec::Run(_) => {
                        samples.flush().map_err(&err)?;
                        tokens.flush().map_err(&err)?;
                    }
                }
                if let Rec::Run(r) = &rec {
                    if let Err(e) = write_record(&store.conn, r) {
                        tracing::error!(error = %e, "storing a run record failed");
                        done.exec_errors.push(e.to_string());
                    }
                    // Told even when the statement failed: the board must not wait forever.
                    match &**r {
                        Record::Start(v) => COMMITS.mark(&v.run_id),
                        Record::End(e) => COMMITS.forget(&e.run_id),
                        _ => {}
                    }
                    on_rec(None);
                } else {
                    on_rec(Some(&rec));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => on_rec(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_flush.elapsed() >= flush_every {
            samples.flush().map_err(&err)?;
            tokens.flush().map_err(&err)?;
            last_flush = Instant::now();
        }
    }
    samples.flush().map_err(&err)?;
    tokens.flush().map_err(&err)?;
    Ok(done)
}

/// [`ingest`] for sample batches only (`sense`, the ingest benchmark): `on_batch` sees each
/// batch, or an empty slice when a flush interval passes without one.
/// How often [`tee`] tells an idle live consumer that nothing arrived (the publisher then sends
/// the batches of sensors that went quiet).
pub const LIVE_TICK: Duration = Duration::from_millis(50);

/// Hands every record to `live` (the MQTT publisher, a screen) the moment it arrives, then passes
/// it on to the writer through the returned channel, on a thread of `scope`: live consumers never
/// wait behind a DuckDB commit or checkpoint (tens of milliseconds at times), and they see the
/// same records, in the same order, as the database. `live(None)` is called when nothing arrived
/// for `tick`, and `end()` once the producers are gone (to send what is still held back).
pub fn tee<'scope, M: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    rx: Receiver<M>,
    tick: Duration,
    mut live: impl FnMut(Option<&M>) + Send + 'scope,
    end: impl FnOnce() + Send + 'scope,
) -> Receiver<M> {
    let (tx, out) = mpsc::channel();
    std::thread::Builder::new()
        .name("live".into())
        .spawn_scoped(scope, move || loop {
            match rx.recv_timeout(tick) {
                Ok(m) => {
                    live(Some(&m));
                    if tx.send(m).is_err() {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => live(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    end();
                    break;
                }
            }
        })
        .expect("spawn the live thread");
    out
}

pub fn ingest_samples(
    store: &Store,
    rx: &Receiver<Vec<SampleRow>>,
    flush_every: Duration,
    mut on_batch: impl FnMut(&[SampleRow]),
) -> Result<u64, StoreError> {
    ingest(store, rx, flush_every, |r| match r {
        Some(Rec::Samples(b)) => on_batch(b),
        _ => on_batch(&[]),
    })
    .map(|d| d.samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_file_gets_current_schema_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lab.duckdb");
        {
            let s = Store::open(&p, "test").unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            assert!(holder_path(&p).exists());
        }
        assert!(!holder_path(&p).exists(), "holder file removed on close");
        let s = Store::open(&p, "test").unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn older_file_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.duckdb");
        {
            let s = Store::open_at(&p, "test", 1).unwrap();
            assert_eq!(s.schema_version().unwrap(), 1);
            s.conn
                .execute_batch(
                    "INSERT INTO power_samples VALUES (NULL, 's', 'b', 1, 5000, 100, 1, 5, true)",
                )
                .unwrap();
        }
        let s = Store::open(&p, "test").unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let (n, sid): (i64, Option<String>) = s
            .conn
            .query_row(
                "SELECT count(*), any_value(session_id) FROM power_samples",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, sid), (1, None));
        // The view exists after migration.
        s.conn.execute_batch("SELECT * FROM run_summary").unwrap();
    }

    #[test]
    fn newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.duckdb");
        {
            let s = Store::open(&p, "test").unwrap();
            s.conn
                .execute_batch("INSERT INTO schema_version VALUES (99, current_timestamp, '9.9')")
                .unwrap();
        }
        let e = Store::open(&p, "test").err().expect("refused");
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("newer than this labctl"));
    }

    #[test]
    fn run_summary_matches_hand_computation() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("v.duckdb"), "test").unwrap();
        s.conn
            .execute_batch(
                "INSERT INTO runs (run_id, board, status, simulated) VALUES ('r1', 'b', 'ok', true);
                 INSERT INTO tokens (run_id, idx, phase, t_us, cycles) VALUES ('r1', 0, 'prefill', 1000, NULL), ('r1', 1, 'decode', 10000, NULL),
                   ('r1', 2, 'decode', 20000, NULL), ('r1', 3, 'decode', 40000, NULL);
                 INSERT INTO power_samples (run_id, sensor, board, t_us, power_mw, simulated)
                   SELECT 'r1', 's', 'b', i * 1000, 100.0, true FROM range(0, 41) t(i);",
            )
            .unwrap();
        let (ttft, p50, tps, e, ept): (f64, f64, f64, f64, f64) = s
            .conn
            .query_row(
                "SELECT ttft_ms, itl_p50_ms, tokens_per_s, energy_mj, energy_per_token_mj FROM run_summary",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(ttft, 10.0);
        assert_eq!(p50, 15.0); // gaps 10 ms and 20 ms
        assert!((tps - 2.0 / 0.03).abs() < 1e-9);
        assert!((e - 4.0).abs() < 1e-9, "100 mW for 40 ms = 4 mJ, got {e}");
        assert!(
            (ept - 1.5).abs() < 1e-9,
            "3 mJ of decode over 2 intervals, got {ept}"
        );
    }
}
