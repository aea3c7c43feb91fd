//! Reading the results database: `labctl query` (read-only SQL, refusing anything that writes)
//! and `labctl export` (every table and the summary view to Parquet, CSV or JSON). Both open the
//! file read-only, so they work whenever no labctl is recording into it.

use std::path::{Path, PathBuf};

use duckdb::{types::ValueRef, AccessMode, Config, Connection};

use crate::{error::BadInput, error::Failed, store};

/// Tables and views `export` writes, in this order.
pub const EXPORTED: &[&str] = &[
    "runs",
    "tokens",
    "power_samples",
    "run_memory",
    "run_ops",
    "rail_truth",
    "quant_accuracy",
    "sense_sessions",
    "schema_version",
    "run_summary",
];

/// The database a reading verb uses: `--db`, else the lab's `[storage] path`.
pub fn db_path(lab_path: &Path, db: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(d) = db {
        return Ok(d);
    }
    if !lab_path.exists() {
        return Err(BadInput(format!(
            "no --db given and no lab file {} to find the database in",
            lab_path.display()
        ))
        .into());
    }
    Ok(crate::lab::load(lab_path)?.storage_path)
}

/// Opens the results file read-only, without access to other files (no ATTACH, COPY, reading
/// or writing files, installing extensions) unless `files` is set (export writes its files).
pub fn open_read_only(path: &Path, files: bool) -> anyhow::Result<Connection> {
    if !path.exists() {
        return Err(BadInput(format!("no results database at {}", path.display())).into());
    }
    let cfg = Config::default()
        .access_mode(AccessMode::ReadOnly)?
        .enable_external_access(files)?
        .enable_autoload_extension(false)?;
    Connection::open_with_flags(path, cfg).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("lock") || msg.contains("Conflicting") {
            Failed(format!(
                "results database {} is being written by another process{}; it is free again when that finishes",
                path.display(),
                store::describe_holder(path)
            ))
            .into()
        } else {
            anyhow::anyhow!("results database {}: {e}", path.display())
        }
    })
}

/// The first keyword of a statement, skipping comments and opening parentheses.
fn first_keyword(sql: &str) -> String {
    let mut s = sql.trim_start();
    loop {
        if let Some(r) = s.strip_prefix("--") {
            s = r.split_once('\n').map_or("", |x| x.1).trim_start();
        } else if let Some(r) = s.strip_prefix("/*") {
            s = r.split_once("*/").map_or("", |x| x.1).trim_start();
        } else if let Some(r) = s.strip_prefix('(') {
            s = r.trim_start();
        } else {
            break;
        }
    }
    s.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Whether `sql` is one statement that only reads; otherwise the reason it is refused.
pub fn check_read_only(sql: &str) -> Result<(), String> {
    const READS: &[&str] = &[
        "SELECT",
        "WITH",
        "FROM",
        "VALUES",
        "TABLE",
        "DESCRIBE",
        "SHOW",
        "SUMMARIZE",
        "EXPLAIN",
        "PIVOT",
        "UNPIVOT",
    ];
    // One statement: a ';' may only end it (string literals may hold ';').
    let mut in_str = false;
    let mut end = None;
    for (i, c) in sql.char_indices() {
        match c {
            '\'' => in_str = !in_str,
            ';' if !in_str => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    if let Some(i) = end {
        let rest = &sql[i + 1..];
        if !first_keyword(rest).is_empty() || rest.trim().trim_matches(';').trim() != "" {
            return Err("one statement at a time, please".into());
        }
    }
    let kw = first_keyword(sql);
    if kw.is_empty() {
        return Err("no SQL statement given".into());
    }
    if READS.contains(&kw.as_str()) {
        return Ok(());
    }
    Err(format!(
        "labctl query only reads: {kw} statements are refused (the database is opened read-only; use the duckdb CLI on a copy to change it)"
    ))
}

fn value_string(v: ValueRef<'_>) -> Option<String> {
    use duckdb::types::Value;
    let owned: Value = v.into();
    match owned {
        Value::Null => None,
        Value::Text(s) => Some(s),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        Value::Timestamp(unit, v) => {
            use duckdb::types::TimeUnit;
            let us = match unit {
                TimeUnit::Second => v.saturating_mul(1_000_000),
                TimeUnit::Millisecond => v.saturating_mul(1_000),
                TimeUnit::Microsecond => v,
                TimeUnit::Nanosecond => v / 1_000,
            };
            Some(iso_timestamp(us))
        }
        Value::Date32(days) => Some(civil_date(i64::from(days))),
        other => {
            let s = format!("{other:?}");
            // Debug of numeric variants is `Variant(n)`: keep just the value.
            Some(
                s.split_once('(')
                    .map(|(_, r)| r.trim_end_matches(')').trim_matches('"').to_string())
                    .unwrap_or(s),
            )
        }
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC, as DuckDB prints a TIMESTAMP) of microseconds since the epoch.
fn iso_timestamp(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}:{:02}.{frac:06}",
        civil_date(days),
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

fn json_value(v: ValueRef<'_>) -> serde_json::Value {
    use duckdb::types::Value;
    let owned: Value = v.into();
    match owned {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => b.into(),
        Value::TinyInt(x) => x.into(),
        Value::SmallInt(x) => x.into(),
        Value::Int(x) => x.into(),
        Value::BigInt(x) => x.into(),
        Value::UTinyInt(x) => x.into(),
        Value::USmallInt(x) => x.into(),
        Value::UInt(x) => x.into(),
        Value::UBigInt(x) => x.into(),
        Value::Float(x) => {
            serde_json::Number::from_f64(x as f64).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Double(x) => {
            serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(s) => s.into(),
        other => value_string(ValueRef::from(&other)).into(),
    }
}

/// `labctl query "SQL"`
pub fn cmd_query(
    lab_path: &Path,
    db: Option<PathBuf>,
    sql: &str,
    format: &str,
) -> anyhow::Result<()> {
    check_read_only(sql).map_err(BadInput)?;
    let path = db_path(lab_path, db)?;
    let conn = open_read_only(&path, false)?;
    let mut stmt = conn.prepare(sql).map_err(|e| BadInput(e.to_string()))?;
    let mut rows = stmt.query([]).map_err(|e| BadInput(e.to_string()))?;
    let names: Vec<String> = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    let mut table: Vec<Vec<Option<String>>> = vec![];
    let mut objects: Vec<serde_json::Value> = vec![];
    while let Some(r) = rows.next().map_err(|e| BadInput(e.to_string()))? {
        let mut cells = vec![];
        let mut obj = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            let v = r.get_ref(i)?;
            if format == "json" {
                obj.insert(n.clone(), json_value(v));
            } else {
                cells.push(value_string(v));
            }
        }
        table.push(cells);
        objects.push(obj.into());
    }
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&objects)?),
        "csv" => {
            let esc = |s: &str| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            println!(
                "{}",
                names.iter().map(|n| esc(n)).collect::<Vec<_>>().join(",")
            );
            for row in &table {
                println!(
                    "{}",
                    row.iter()
                        .map(|c| c.as_deref().map(esc).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        _ => {
            let shown: Vec<Vec<String>> = table
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|c| c.clone().unwrap_or_else(|| "NULL".into()))
                        .collect()
                })
                .collect();
            let width: Vec<usize> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    shown
                        .iter()
                        .map(|r| r[i].chars().count())
                        .chain([n.len()])
                        .max()
                        .unwrap_or(0)
                        .min(40)
                })
                .collect();
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .zip(&width)
                    .map(|(c, w)| {
                        let c: String = c.chars().take(*w).collect();
                        format!("{c:<w$}")
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            println!("{}", line(names.iter().map(String::as_str).collect()));
            println!(
                "{}",
                line(
                    width
                        .iter()
                        .map(|w| "-".repeat(*w))
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str)
                        .collect()
                )
            );
            for r in &shown {
                println!("{}", line(r.iter().map(String::as_str).collect()));
            }
            eprintln!(
                "({} row{})",
                shown.len(),
                if shown.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}

/// `labctl export --format parquet|csv|json -o DIR`
pub fn cmd_export(
    lab_path: &Path,
    db: Option<PathBuf>,
    format: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let path = db_path(lab_path, db)?;
    let conn = open_read_only(&path, true)?;
    std::fs::create_dir_all(out)
        .map_err(|e| Failed(format!("cannot create {}: {e}", out.display())))?;
    let (ext, opts) = match format {
        "parquet" => ("parquet", "FORMAT parquet"),
        "csv" => ("csv", "FORMAT csv, HEADER true"),
        _ => ("json", "FORMAT json, ARRAY true"),
    };
    for t in EXPORTED {
        let file = out.join(format!("{t}.{ext}"));
        let target = file.to_string_lossy().replace('\'', "''");
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?;
        conn.execute_batch(&format!("COPY (SELECT * FROM {t}) TO '{target}' ({opts})"))
            .map_err(|e| Failed(format!("exporting {t}: {e}")))?;
        println!("{:<16} {:>9} rows  {}", t, n, file.display());
    }
    Ok(())
}

/// Metrics `compare` reports by default (columns of `run_summary`).
pub const COMPARE_METRICS: &[&str] = &[
    "ttft_ms",
    "itl_p50_ms",
    "itl_p90_ms",
    "tokens_per_s",
    "energy_per_token_mj",
    "avg_power_mw",
    "peak_power_mw",
    "ram_peak_kb",
    "flash_kb",
];

/// Metrics `compare` knows besides the default ones.
const EXTRA_METRICS: &[&str] = &["itl_p99_ms", "e2e_ms", "energy_mj", "cycles_per_token"];

/// Per run: the median of the board's cycle counter over its decode tokens (SysTick ticks on the
/// QEMU boards), for comparing kernels by cycles rather than host-dependent time.
const CYCLES_PER_TOKEN: &str = "(SELECT run_id, median(cycles) AS cycles_per_token FROM tokens \
     WHERE phase = 'decode' AND cycles IS NOT NULL GROUP BY run_id)";

const GROUPS: &[&str] = &["board", "platform", "profile", "model", "quant"];

/// `labctl compare`: per group, the median of each metric over its `ok` runs with the p10–p90
/// spread and the number of runs behind it; quantization accuracy when grouping by quant.
pub fn cmd_compare(
    lab_path: &Path,
    db: Option<PathBuf>,
    by: &[String],
    metrics: &[String],
    format: &str,
) -> anyhow::Result<()> {
    let by: Vec<String> = if by.is_empty() {
        vec!["board".into(), "model".into(), "quant".into()]
    } else {
        by.to_vec()
    };
    for g in &by {
        if !GROUPS.contains(&g.as_str()) {
            return Err(BadInput(format!("--by {g}: one of {}", GROUPS.join(", "))).into());
        }
    }
    let metrics: Vec<String> = if metrics.is_empty() {
        COMPARE_METRICS.iter().map(|m| m.to_string()).collect()
    } else {
        metrics.to_vec()
    };
    for m in &metrics {
        if !COMPARE_METRICS.contains(&m.as_str()) && !EXTRA_METRICS.contains(&m.as_str()) {
            return Err(BadInput(format!(
                "--metric {m}: one of {}, {}",
                COMPARE_METRICS.join(", "),
                EXTRA_METRICS.join(", ")
            ))
            .into());
        }
    }
    let path = db_path(lab_path, db)?;
    let conn = open_read_only(&path, false)?;
    let keys = by
        .iter()
        .map(|g| format!("s.{g}"))
        .collect::<Vec<_>>()
        .join(", ");
    let aggs = metrics
        .iter()
        .map(|m| {
            let col = if m == "cycles_per_token" {
                "c.cycles_per_token".to_string()
            } else {
                format!("s.{m}")
            };
            format!(
                "median({col}) AS {m}_median, quantile_cont({col}, 0.1) AS {m}_p10, quantile_cont({col}, 0.9) AS {m}_p90"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let with_acc = by.iter().any(|g| g == "quant");
    let (acc_cols, acc_join) = if with_acc {
        (
            ", any_value(a.top1) AS top1_agreement, any_value(a.kl) AS mean_kl",
            " LEFT JOIN (SELECT quant, avg(top1_agreement) AS top1, avg(mean_kl) AS kl FROM quant_accuracy GROUP BY quant) a ON a.quant = s.quant",
        )
    } else {
        ("", "")
    };
    let cyc_join = if metrics.iter().any(|m| m == "cycles_per_token") {
        format!(" LEFT JOIN {CYCLES_PER_TOKEN} c ON c.run_id = s.run_id")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {keys}, count(*) AS runs, {aggs}{acc_cols} \
         FROM run_summary s JOIN runs r ON r.run_id = s.run_id{acc_join}{cyc_join} \
         WHERE r.status = 'ok' GROUP BY {keys} ORDER BY {keys}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out: Vec<serde_json::Map<String, serde_json::Value>> = vec![];
    while let Some(r) = rows.next()? {
        let mut o = serde_json::Map::new();
        let mut i = 0;
        for g in &by {
            o.insert(g.clone(), json_value(r.get_ref(i)?));
            i += 1;
        }
        o.insert("runs".into(), json_value(r.get_ref(i)?));
        i += 1;
        for m in &metrics {
            let (med, p10, p90) = (
                json_value(r.get_ref(i)?),
                json_value(r.get_ref(i + 1)?),
                json_value(r.get_ref(i + 2)?),
            );
            i += 3;
            o.insert(
                m.clone(),
                serde_json::json!({"median": med, "p10": p10, "p90": p90}),
            );
        }
        if with_acc {
            o.insert("top1_agreement".into(), json_value(r.get_ref(i)?));
            o.insert("mean_kl".into(), json_value(r.get_ref(i + 1)?));
        }
        out.push(o);
    }
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let cell = |v: &serde_json::Value| -> String {
        let f = |x: &serde_json::Value| {
            x.as_f64().map_or("-".into(), |x| {
                if x.abs() >= 100.0 {
                    format!("{x:.0}")
                } else if x.abs() >= 1.0 {
                    format!("{x:.2}")
                } else {
                    format!("{x:.4}")
                }
            })
        };
        if v.get("median").is_some() {
            format!("{} [{}–{}]", f(&v["median"]), f(&v["p10"]), f(&v["p90"]))
        } else if let Some(n) = v.as_i64() {
            n.to_string()
        } else {
            v.as_str().map(str::to_string).unwrap_or_else(|| f(v))
        }
    };
    let mut cols: Vec<String> = by.clone();
    cols.push("runs".into());
    cols.extend(metrics.iter().cloned());
    if with_acc {
        cols.push("top1_agreement".into());
        cols.push("mean_kl".into());
    }
    let cells: Vec<Vec<String>> = out
        .iter()
        .map(|o| cols.iter().map(|c| cell(&o[c])).collect())
        .collect();
    if format == "csv" {
        println!("{}", cols.join(","));
        for r in &cells {
            println!(
                "{}",
                r.iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        return Ok(());
    }
    let width: Vec<usize> = (0..cols.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([cols[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |v: &[String]| {
        v.iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(&cols));
    for r in &cells {
        println!("{}", line(r));
    }
    println!("median [p10–p90] over the runs with status ok; accuracy vs f32 from --validate runs");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_duckdb_does() {
        assert_eq!(iso_timestamp(0), "1970-01-01 00:00:00.000000");
        assert_eq!(
            iso_timestamp(1_796_143_760_339_442),
            "2026-12-01 16:49:20.339442"
        );
        assert_eq!(civil_date(-1), "1969-12-31");
        assert_eq!(civil_date(19_782), "2024-02-29");
    }

    #[test]
    fn only_single_reading_statements_pass() {
        for ok in [
            "SELECT 1",
            "  -- comment\n select * from runs",
            "/* x */ WITH a AS (SELECT 1) SELECT * FROM a",
            "(SELECT 1)",
            "FROM run_summary",
            "DESCRIBE runs",
            "SELECT ';' AS semi;",
        ] {
            assert!(check_read_only(ok).is_ok(), "{ok}");
        }
        for bad in [
            "INSERT INTO runs VALUES (1)",
            "DELETE FROM runs",
            "UPDATE runs SET status = 'x'",
            "CREATE TABLE t (a INT)",
            "DROP TABLE runs",
            "ATTACH 'other.db' AS o",
            "COPY runs TO 'x.csv'",
            "PRAGMA enable_profiling",
            "SELECT 1; DELETE FROM runs",
            "INSTALL httpfs",
            "CALL pragma_version()",
            "",
        ] {
            assert!(check_read_only(bad).is_err(), "{bad}");
        }
    }
}

/// A duty cycle and battery for the battery-life estimate.
pub struct Duty {
    pub tokens_per_hour: f64,
    pub battery_mah: f64,
    pub battery_v: f64,
}

/// One board × model × quant with its medians over `ok` runs.
#[derive(Debug, Clone, serde::Serialize)]
struct Candidate {
    board: String,
    profile: String,
    model: String,
    quant: String,
    runs: i64,
    tokens_per_s: f64,
    energy_per_token_mj: f64,
    top1_agreement: Option<f64>,
    dominant_op: Option<String>,
    dominant_share: Option<f64>,
    ram_peak_kb: Option<f64>,
    flash_kb: Option<f64>,
    idle_mw: Option<f64>,
    battery_hours: Option<f64>,
    pareto: bool,
    ram_margin: Option<f64>,
    flash_margin: Option<f64>,
}

/// `labctl compare --recommend`
pub fn cmd_recommend(
    lab_path: &Path,
    db: Option<PathBuf>,
    duty: Duty,
    json: bool,
) -> anyhow::Result<()> {
    if !(duty.tokens_per_hour >= 0.0 && duty.battery_mah > 0.0 && duty.battery_v > 0.0) {
        return Err(
            BadInput("--tokens-per-hour ≥ 0, --battery-mah and --battery-v > 0".into()).into(),
        );
    }
    let path = db_path(lab_path, db)?;
    let conn = open_read_only(&path, false)?;
    let mut stmt = conn.prepare(
        "WITH ok AS (SELECT s.* FROM run_summary s JOIN runs r USING (run_id) WHERE r.status = 'ok'),
              ops AS (SELECT r.board, r.model, o.op, sum(o.cycles) AS c FROM run_ops o JOIN runs r USING (run_id)
                      WHERE r.status = 'ok' GROUP BY ALL),
              dom AS (SELECT board, model, arg_max(op, c) AS op, max(c) / sum(c) AS share FROM ops GROUP BY ALL),
              acc AS (SELECT quant, avg(top1_agreement) AS top1 FROM quant_accuracy GROUP BY quant),
              idle AS (SELECT board, median(power_mw) AS mw FROM power_samples WHERE run_id IS NULL AND power_mw > 0.5 GROUP BY board)
         SELECT ok.board, any_value(ok.profile), ok.model, ok.quant, count(*), median(ok.tokens_per_s),
                median(ok.energy_per_token_mj), any_value(acc.top1), any_value(dom.op), any_value(dom.share),
                max(ok.ram_peak_kb), max(ok.flash_kb), any_value(idle.mw)
         FROM ok LEFT JOIN acc USING (quant) LEFT JOIN dom USING (board, model) LEFT JOIN idle USING (board)
         WHERE ok.tokens_per_s IS NOT NULL GROUP BY ok.board, ok.model, ok.quant ORDER BY ok.board, ok.model",
    )?;
    let mut cands: Vec<Candidate> = stmt
        .query_map([], |r| {
            Ok(Candidate {
                board: r.get(0)?,
                profile: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                model: r.get(2)?,
                quant: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                runs: r.get(4)?,
                tokens_per_s: r.get(5)?,
                energy_per_token_mj: r.get::<_, Option<f64>>(6)?.unwrap_or(f64::NAN),
                top1_agreement: r.get(7)?,
                dominant_op: r.get(8)?,
                dominant_share: r.get(9)?,
                ram_peak_kb: r.get(10)?,
                flash_kb: r.get(11)?,
                idle_mw: r.get(12)?,
                battery_hours: None,
                pareto: false,
                ram_margin: None,
                flash_margin: None,
            })
        })?
        .collect::<Result<_, _>>()?;
    // Memory margins against the lab's board profiles, when a lab is at hand.
    if let Ok(rt) = crate::rig::Runtime::open(lab_path) {
        for c in &mut cands {
            let prof = rt
                .lab
                .board(&c.board)
                .and_then(|b| rt.plugins.profile(&b.platform, &b.profile));
            if let (Some(p), Some(ram), Some(flash)) = (prof, c.ram_peak_kb, c.flash_kb) {
                let ram_need = ram * 1024.0 + crate::model::FIRMWARE_RAM_BYTES as f64;
                let flash_need = flash * 1024.0 + crate::model::FIRMWARE_FLASH_BYTES as f64;
                c.ram_margin =
                    Some(1.0 - ram_need / (p.sram_bytes() + p.psram_bytes()).max(1) as f64);
                c.flash_margin = Some(1.0 - flash_need / p.flash_bytes().max(1) as f64);
            }
        }
    }
    // Battery: active energy for the tokens plus idle power for the rest of the hour.
    for c in &mut cands {
        if let (Some(idle), true) = (c.idle_mw, c.energy_per_token_mj.is_finite()) {
            let active_s = duty.tokens_per_hour / c.tokens_per_s.max(1e-9);
            let j_per_hour = duty.tokens_per_hour * c.energy_per_token_mj / 1000.0
                + idle / 1000.0 * (3600.0 - active_s).max(0.0);
            let battery_j = duty.battery_mah / 1000.0 * duty.battery_v * 3600.0;
            c.battery_hours = (j_per_hour > 0.0).then(|| battery_j / j_per_hour);
        }
    }
    // Pareto: no other candidate is at least as fast, as frugal and as accurate, and better in one.
    let acc = |c: &Candidate| c.top1_agreement.unwrap_or(0.0);
    for i in 0..cands.len() {
        let a = &cands[i];
        let dominated = cands.iter().enumerate().any(|(j, b)| {
            j != i
                && b.tokens_per_s >= a.tokens_per_s
                && b.energy_per_token_mj <= a.energy_per_token_mj
                && acc(b) >= acc(a)
                && (b.tokens_per_s > a.tokens_per_s
                    || b.energy_per_token_mj < a.energy_per_token_mj
                    || acc(b) > acc(a))
        });
        cands[i].pareto = !dominated && a.energy_per_token_mj.is_finite();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&cands)?);
        return Ok(());
    }
    if cands.is_empty() {
        println!(
            "no successful runs in {} yet: run `labctl run` first",
            path.display()
        );
        return Ok(());
    }
    let pct = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.0}%", v * 100.0));
    println!("Bottlenecks (dominant operator by cycles):");
    for c in &cands {
        println!(
            "  {:<16} {:<22} {:<10} {}",
            c.board,
            c.model,
            c.dominant_op.as_deref().unwrap_or("-"),
            pct(c.dominant_share)
        );
    }
    println!(
        "\nPareto-optimal board × quantization (tokens/s ↑, energy/token ↓, top-1 agreement ↑):"
    );
    for c in cands.iter().filter(|c| c.pareto) {
        println!(
            "  {:<16} {:<6} {:>8.1} tok/s  {:>8.4} mJ/token  agreement {}",
            c.board,
            c.quant,
            c.tokens_per_s,
            c.energy_per_token_mj,
            pct(c.top1_agreement)
        );
    }
    println!("\nMemory fit (margin left on the board's profile, firmware included):");
    for c in &cands {
        println!(
            "  {:<16} {:<22} RAM {:>5}  flash {:>5}{}",
            c.board,
            c.model,
            pct(c.ram_margin),
            pct(c.flash_margin),
            if c.ram_margin.is_some_and(|m| m < 0.1) || c.flash_margin.is_some_and(|m| m < 0.1) {
                "  (tight)"
            } else {
                ""
            }
        );
    }
    println!(
        "\nBattery life at {} tokens/hour on {} mAh at {} V (idle power: the median of samples taken while the board was on but not running a prompt):",
        duty.tokens_per_hour, duty.battery_mah, duty.battery_v
    );
    for c in &cands {
        println!(
            "  {:<16} {:<22} {}",
            c.board,
            c.model,
            c.battery_hours
                .map_or("- (no idle samples)".into(), |h| format!(
                    "{:.1} h ({:.1} days)",
                    h,
                    h / 24.0
                ))
        );
    }
    Ok(())
}
