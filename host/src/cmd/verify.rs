//! `labctl verify`: checks a results database — every table read through (DuckDB checks each
//! block's checksum as it reads it), and every sealed run's tokens and samples against the
//! checksums its manifest holds (`run_manifests`). Exit 0 when all is well, 1 when something does
//! not match or cannot be read, 2 for bad input.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{error::Failed, store};

const TABLES: &[&str] = &[
    "runs",
    "tokens",
    "power_samples",
    "sense_sessions",
    "run_memory",
    "run_ops",
    "rail_truth",
    "quant_accuracy",
    "board_events",
    "run_manifests",
];

#[derive(Serialize, Default)]
struct Report {
    db: String,
    tables: Vec<(String, i64)>,
    unreadable: Vec<String>,
    runs: i64,
    sealed: i64,
    /// Runs left without checksums (labctl stopped before their batch ended; or older files).
    unsealed: i64,
    mismatched: Vec<Mismatch>,
}

#[derive(Serialize)]
struct Mismatch {
    run_id: String,
    what: String,
}

pub fn cmd(lab_path: &Path, db: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let path = match db {
        Some(p) => p,
        None => crate::lab::load(lab_path)?.storage_path,
    };
    let c = crate::results::open_read_only(&path, false)?;
    let mut r = Report {
        db: path.display().to_string(),
        ..Default::default()
    };
    for t in TABLES {
        // Every column of every row is read (and hashed), so a damaged block is found.
        match c.query_row(
            &format!("SELECT count(*), bit_xor(hash(t)) FROM {t} t"),
            [],
            |row| row.get::<_, i64>(0),
        ) {
            Ok(n) => r.tables.push((t.to_string(), n)),
            Err(e) => r.unreadable.push(format!("{t}: {e}")),
        }
    }
    let count = |q: &str| c.query_row(q, [], |row| row.get::<_, i64>(0)).unwrap_or(0);
    r.runs = count("SELECT count(*) FROM runs");
    r.sealed = count("SELECT count(*) FROM run_manifests WHERE sealed_at IS NOT NULL");
    r.unsealed = r.runs - r.sealed;
    let sql = format!(
        "SELECT d.run_id, m.tokens, d.tn, m.tokens_sha256 = d.th, m.samples, d.sn, m.samples_sha256 = d.sh \
         FROM ({}) d JOIN run_manifests m USING (run_id) ORDER BY d.run_id",
        store::digests_sql(
            "SELECT run_id FROM run_manifests WHERE sealed_at IS NOT NULL",
            (-1, -1)
        )
    );
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, bool>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, bool>(6)?,
        ))
    })?;
    for row in rows {
        let (run_id, tokens, tn, tok_ok, samples, sn, smp_ok) = row?;
        let mut what = vec![];
        if tokens != tn {
            what.push(format!("{tn} token rows, sealed with {tokens}"));
        } else if !tok_ok {
            what.push("token rows changed since sealed".to_string());
        }
        if samples != sn {
            what.push(format!("{sn} power samples, sealed with {samples}"));
        } else if !smp_ok {
            what.push("power samples changed since sealed".to_string());
        }
        if !what.is_empty() {
            r.mismatched.push(Mismatch {
                run_id,
                what: what.join("; "),
            });
        }
    }
    let bad = !r.mismatched.is_empty() || !r.unreadable.is_empty();
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{}: {} tables read through", r.db, r.tables.len());
        for u in &r.unreadable {
            println!("  UNREADABLE {u}");
        }
        println!(
            "{} runs: {} sealed and checked, {} without checksums",
            r.runs, r.sealed, r.unsealed
        );
        for m in &r.mismatched {
            println!("  MISMATCH {}: {}", m.run_id, m.what);
        }
        if !bad {
            println!("ok");
        }
    }
    if bad {
        return Err(Failed(format!(
            "{} run(s) do not match their checksums, {} table(s) unreadable",
            r.mismatched.len(),
            r.unreadable.len()
        ))
        .into());
    }
    Ok(())
}
