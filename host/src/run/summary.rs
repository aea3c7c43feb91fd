//! The summary of a job: one `run_summary` row per run, printed as a table (or JSON), and one
//! problem line per board and reason.

use std::{collections::HashMap, sync::Arc};

use crate::{records::SummaryRow, store::Store};

/// The summary rows of `ids` (runs of `batch`), in that order: one query for the whole batch
/// (the `run_summary` view aggregates tokens and samples; asked once per run, a long batch took
/// quadratic time).
pub(super) fn summary(
    store: &Store,
    ids: &[Arc<str>],
    batch: &str,
) -> anyhow::Result<Vec<SummaryRow>> {
    let mut stmt = store.conn.prepare(
        "SELECT s.run_id, s.board, s.profile, s.model, s.quant, r.status, r.error, s.ttft_ms, s.itl_p50_ms,          s.itl_p90_ms, s.itl_p99_ms, s.tokens_per_s, s.e2e_ms, s.avg_power_mw, s.peak_power_mw, s.energy_mj,          s.energy_per_token_mj, s.ram_peak_kb, s.flash_kb, s.simulated, r.reason_code,          r.tokenizer, r.output_text          FROM run_summary s JOIN runs r USING (run_id) WHERE r.batch_id = ?",
    )?;
    let mut by_id: HashMap<String, SummaryRow> = HashMap::new();
    {
        let rows = stmt.query_map([batch], |r| {
            Ok(SummaryRow {
                run_id: r.get(0)?,
                board: r.get(1)?,
                profile: r.get(2)?,
                model: r.get(3)?,
                quant: r.get(4)?,
                status: r.get(5)?,
                error: r.get(6)?,
                ttft_ms: r.get(7)?,
                itl_p50_ms: r.get(8)?,
                itl_p90_ms: r.get(9)?,
                itl_p99_ms: r.get(10)?,
                tokens_per_s: r.get(11)?,
                e2e_ms: r.get(12)?,
                avg_power_mw: r.get(13)?,
                peak_power_mw: r.get(14)?,
                energy_mj: r.get(15)?,
                energy_per_token_mj: r.get(16)?,
                ram_peak_kb: r.get(17)?,
                flash_kb: r.get(18)?,
                simulated: r.get(19)?,
                reason_code: r.get(20)?,
                tokenizer: r.get(21)?,
                output_text: r.get(22)?,
            })
        })?;
        for r in rows {
            let r = r?;
            by_id.insert(r.run_id.clone(), r);
        }
    }
    // In the order the runs were recorded, each once.
    Ok(ids.iter().filter_map(|id| by_id.remove(&**id)).collect())
}

pub(super) fn print_summary(rows: &[SummaryRow], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    // The text columns as wide as their longest entry.
    let width = |head: &str, get: &dyn Fn(&SummaryRow) -> usize| {
        rows.iter().map(get).fold(head.len(), usize::max)
    };
    let wb = width("board", &|r| r.board.len());
    let wp = width("profile", &|r| r.profile.as_deref().map_or(1, str::len));
    let wm = width("model", &|r| r.model.as_deref().map_or(1, str::len));
    let ws = width("status", &|r| r.status.len());
    println!(
        "{:<wb$} {:<wp$} {:<wm$} {:<ws$} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
        "board",
        "profile",
        "model",
        "status",
        "ttft_ms",
        "itl_p50",
        "itl_p99",
        "tok/s",
        "avg_mW",
        "energy_mJ",
        "mJ/token",
        "ram_kb",
        "flash_kb"
    );
    for r in rows {
        println!(
            "{:<wb$} {:<wp$} {:<wm$} {:<ws$} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
            r.board,
            r.profile.as_deref().unwrap_or("-"),
            r.model.as_deref().unwrap_or("-"),
            r.status,
            f(r.ttft_ms, 2),
            f(r.itl_p50_ms, 2),
            f(r.itl_p99_ms, 2),
            f(r.tokens_per_s, 1),
            f(r.avg_power_mw, 1),
            f(r.energy_mj, 2),
            f(r.energy_per_token_mj, 3),
            f(r.ram_peak_kb, 0),
            f(r.flash_kb, 0),
        );
    }
    // The generated text of models with a real tokenizer (a generated preset's byte-level
    // "text" from random weights says nothing).
    for r in rows.iter().filter(|r| {
        r.tokenizer.as_deref().is_some_and(|t| t != "byte-level") && r.output_text.is_some()
    }) {
        let text = r.output_text.as_deref().unwrap_or_default();
        let mut shown: String = text.chars().take(120).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        println!(
            "{} {}: {:?}",
            r.board,
            r.model.as_deref().unwrap_or("-"),
            shown
        );
    }
    if rows.iter().any(|r| r.simulated == Some(true)) {
        println!("simulated: emulated boards (virtual ones run on the host CPU, qemu ones count emulated cycles): not the real chips' timings. Results are in the database (tables runs, tokens, power_samples; view run_summary).");
    }
    for line in problems(rows.iter().filter(|r| r.error.is_some())) {
        println!("{line}");
    }
    Ok(())
}

/// One line per board, status and reason, however many runs share it (`board: 35 partial (…)`).
pub(super) fn problems<'a>(rows: impl Iterator<Item = &'a SummaryRow>) -> Vec<String> {
    let mut groups: Vec<((&str, &str, &str), usize)> = vec![];
    for r in rows {
        let key = (
            r.board.as_str(),
            r.status.as_str(),
            r.error.as_deref().unwrap_or(""),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => groups.push((key, 1)),
        }
    }
    groups
        .iter()
        .map(|((board, status, why), n)| {
            let runs = if *n == 1 { "run" } else { "runs" };
            format!("{board}: {n} {runs} {status} ({why})")
        })
        .collect()
}
