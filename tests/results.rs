//! Reading results: `labctl query` refuses every form of write and leaves the file unchanged;
//! `labctl export` writes Parquet that an independent reader (pyarrow) finds equal to the tables.

use std::process::Command;

use labctl_integration_tests::{labctl, run_ok, text, virtual_lab};
use serde_json::Value;

fn digest(p: &std::path::Path) -> (u64, Vec<u8>) {
    let b = std::fs::read(p).unwrap();
    (b.len() as u64, b)
}

#[test]
fn query_reads_and_refuses_every_write() {
    let (dir, lab) = virtual_lab();
    let lab = lab.to_str().unwrap();
    run_ok(&["--lab", lab, "run", "--boards", "pico"]);
    let db = dir.path().join("lab.duckdb");
    let before = digest(&db);
    let o = run_ok(&[
        "--lab",
        lab,
        "query",
        "SELECT board, quant, tokens_per_s FROM run_summary",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(v[0]["board"], "pico");
    assert!(v[0]["tokens_per_s"].as_f64().unwrap() > 0.0);
    let o = labctl()
        .args([
            "query",
            "--db",
            db.to_str().unwrap(),
            "SELECT count(*) AS n FROM runs",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&o).0, "n\n1\n");
    let out_file = dir.path().join("stolen.csv");
    for sql in [
        "INSERT INTO runs (run_id, board, status, simulated) VALUES ('x', 'b', 'ok', true)"
            .to_string(),
        "DELETE FROM runs".into(),
        "UPDATE runs SET status = 'failed'".into(),
        "CREATE TABLE t AS SELECT 1".into(),
        "DROP TABLE tokens".into(),
        format!(
            "ATTACH '{}' AS other",
            dir.path().join("other.duckdb").display()
        ),
        format!("COPY runs TO '{}'", out_file.display()),
        format!("COPY (SELECT 1) TO '{}'", out_file.display()),
        "PRAGMA enable_checkpoint_on_shutdown".into(),
        "SELECT 1; DELETE FROM runs".into(),
        "ALTER TABLE runs ADD COLUMN x INT".into(),
        "CHECKPOINT".into(),
        "INSTALL httpfs".into(),
        format!("SELECT * FROM read_csv('{}')", db.display()),
    ] {
        let o = labctl()
            .args(["--lab", lab, "query", &sql])
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{sql}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!out_file.exists());
    assert!(digest(&db) == before, "the database file is unchanged");
    // SQL errors come back as DuckDB reports them, exit 2.
    let o = labctl()
        .args(["--lab", lab, "query", "SELECT nope FROM runs"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("nope"), "{}", text(&o).1);
}

fn have_pyarrow() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pyarrow.parquet"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let why = "python3 with pyarrow is not available (python3 -m pip install pyarrow)";
        if std::env::var("LAB_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{why}, and LAB_REQUIRE_EXTERNAL=1");
        }
        eprintln!("skipping: {why}");
    }
    ok
}

#[test]
fn exported_parquet_equals_the_tables_for_an_independent_reader() {
    let (dir, lab) = virtual_lab();
    let lab = lab.to_str().unwrap();
    run_ok(&["--lab", lab, "run", "--tokens", "20"]);
    let out = dir.path().join("export");
    run_ok(&[
        "--lab",
        lab,
        "export",
        "--format",
        "parquet",
        "-o",
        out.to_str().unwrap(),
    ]);
    for t in ["runs", "tokens", "power_samples", "run_summary"] {
        assert!(out.join(format!("{t}.parquet")).exists(), "{t}");
    }
    if !have_pyarrow() {
        return;
    }
    // Ours: counts and sums through labctl query; theirs: pyarrow on the files.
    let ours = |sql: &str| -> Value {
        let o = labctl()
            .args(["--lab", lab, "query", sql, "--format", "json"])
            .output()
            .unwrap();
        serde_json::from_str(&text(&o).0).unwrap()
    };
    let mine = ours(
        "SELECT (SELECT count(*) FROM tokens) AS tokens, (SELECT sum(t_us) FROM tokens)::BIGINT AS tok_sum,
                (SELECT count(*) FROM power_samples) AS samples, (SELECT round(sum(power_mw), 3) FROM power_samples) AS mw_sum,
                (SELECT count(*) FROM runs) AS runs, (SELECT string_agg(run_id, ',' ORDER BY run_id) FROM runs) AS ids",
    );
    let script = format!(
        r#"
import json, pyarrow.parquet as pq
d = "{}"
tok = pq.read_table(d + "/tokens.parquet").to_pydict()
ps = pq.read_table(d + "/power_samples.parquet").to_pydict()
runs = pq.read_table(d + "/runs.parquet").to_pydict()
print(json.dumps({{"tokens": len(tok["t_us"]), "tok_sum": sum(tok["t_us"]),
  "samples": len(ps["t_us"]), "mw_sum": round(sum(ps["power_mw"]), 3),
  "runs": len(runs["run_id"]), "ids": ",".join(sorted(runs["run_id"]))}}))
"#,
        out.display()
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs: Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &mine[0];
    for k in ["tokens", "tok_sum", "samples", "runs", "ids"] {
        assert_eq!(m[k], theirs[k], "{k}");
    }
    assert!((m["mw_sum"].as_f64().unwrap() - theirs["mw_sum"].as_f64().unwrap()).abs() < 0.01);
}

#[test]
fn compare_reports_the_medians_of_repeated_runs() {
    let (dir, lab) = virtual_lab();
    let lab = lab.to_str().unwrap();
    run_ok(&[
        "--lab",
        lab,
        "run",
        "--boards",
        "pico,esp32s3-devkit",
        "--repeat",
        "5",
        "--tokens",
        "30",
    ]);
    let o = run_ok(&["--lab", lab, "compare", "--by", "board", "--format", "json"]);
    let rows: Value = serde_json::from_str(&text(&o).0).unwrap();
    // Independent: the per-run values, and the median computed here.
    let c = duckdb::Connection::open_with_flags(
        dir.path().join("lab.duckdb"),
        duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .unwrap(),
    )
    .unwrap();
    for r in rows.as_array().unwrap() {
        let board = r["board"].as_str().unwrap();
        assert_eq!(r["runs"], 5, "{r}");
        for metric in ["tokens_per_s", "ttft_ms", "itl_p50_ms"] {
            let mut v: Vec<f64> = c
                .prepare(&format!("SELECT {metric} FROM run_summary WHERE board = ?"))
                .unwrap()
                .query_map([board], |x| x.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            v.sort_by(f64::total_cmp);
            let median = v[v.len() / 2]; // five runs: the middle one
            let got = r[metric]["median"].as_f64().unwrap();
            assert!(
                (got - median).abs() < 1e-9,
                "{board} {metric}: {got} vs {median}"
            );
            assert!(
                r[metric]["p10"].as_f64().unwrap() <= got
                    && got <= r[metric]["p90"].as_f64().unwrap()
            );
        }
    }
}

#[test]
fn every_query_in_docs_sql_runs() {
    let (_dir, lab) = virtual_lab();
    let lab = lab.to_str().unwrap();
    run_ok(&[
        "--lab",
        lab,
        "run",
        "--boards",
        "pico",
        "--repeat",
        "2",
        "--tokens",
        "10",
        "--validate",
    ]);
    let doc =
        std::fs::read_to_string(labctl_integration_tests::repo().join("docs/sql.md")).unwrap();
    let queries: Vec<&str> = doc
        .split("```sql\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert_eq!(queries.len(), 10);
    for q in queries {
        let o = labctl()
            .args(["--lab", lab, "query", q.trim()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{q}\n{}", text(&o).1);
    }
}

#[test]
fn recommendations_name_bottlenecks_pareto_choices_fits_and_battery_life() {
    let (_dir, lab) = virtual_lab();
    let lab = lab.to_str().unwrap();
    run_ok(&[
        "--lab",
        lab,
        "run",
        "--boards",
        "pico,esp32s3-devkit",
        "--repeat",
        "2",
        "--tokens",
        "100",
        "--model",
        "stories260k:q8_0",
        "--model",
        "stories260k:q4_0",
        "--validate",
    ]);
    let o = run_ok(&[
        "--lab",
        lab,
        "compare",
        "--recommend",
        "--format",
        "json",
        "--tokens-per-hour",
        "500",
        "--battery-mah",
        "1000",
        "--battery-v",
        "3.7",
    ]);
    let v: Value = serde_json::from_str(&text(&o).0).unwrap();
    let c = v.as_array().unwrap();
    assert_eq!(c.len(), 4, "2 boards x 2 quantizations");
    assert!(c.iter().any(|x| x["pareto"] == true));
    for x in c {
        // The largest of four shares: one of the operators, with at least a quarter of the cycles.
        assert!(
            ["matmul", "attention", "norm", "other"].contains(&x["dominant_op"].as_str().unwrap()),
            "{x}"
        );
        let share = x["dominant_share"].as_f64().unwrap();
        assert!((0.25..=1.0).contains(&share), "{x}");
        assert!(x["top1_agreement"].as_f64().is_some(), "{x}");
        assert!(
            x["ram_margin"].as_f64().unwrap() > 0.0 && x["flash_margin"].as_f64().unwrap() > 0.0
        );
        // The estimate is the documented arithmetic on the row's own figures.
        let (tps, ept, idle) = (
            x["tokens_per_s"].as_f64().unwrap(),
            x["energy_per_token_mj"].as_f64().unwrap(),
            x["idle_mw"].as_f64().unwrap(),
        );
        let j = 500.0 * ept / 1000.0 + idle / 1000.0 * (3600.0 - 500.0 / tps);
        let hours = 1.0 * 3.7 * 3600.0 / j;
        assert!(
            (x["battery_hours"].as_f64().unwrap() - hours).abs() < 1e-6 * hours,
            "{x}"
        );
    }
}
