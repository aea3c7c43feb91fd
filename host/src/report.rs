//! `labctl report`: one self-contained HTML file (inline CSS and SVG, no script, nothing fetched
//! when viewed) with the runs' summary, power traces with token markers and phases, the
//! inter-token latency histogram, the operator breakdown, a tokens/s comparison and a
//! latency-vs-energy Pareto plot. Also the same data as JSON or CSV.

use std::{fmt::Write as _, path::Path};

use duckdb::Connection;

use crate::{
    error::BadInput,
    results::{db_path, open_read_only},
};

/// Which runs a report covers.
pub enum Select {
    Run(String),
    LastBatch,
    All,
}

/// Runs with a power trace drawn in full (the rest are in the tables and aggregate charts).
const MAX_TRACES: usize = 12;

#[derive(Debug, serde::Serialize)]
struct RunRow {
    run_id: String,
    board: String,
    model: Option<String>,
    quant: Option<String>,
    status: String,
    ttft_ms: Option<f64>,
    itl_p50_ms: Option<f64>,
    tokens_per_s: Option<f64>,
    e2e_ms: Option<f64>,
    avg_power_mw: Option<f64>,
    energy_per_token_mj: Option<f64>,
    ram_peak_kb: Option<f64>,
    simulated: Option<bool>,
    tokenizer: Option<String>,
    output_text: Option<String>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn runs(conn: &Connection, sel: &Select) -> anyhow::Result<Vec<RunRow>> {
    let filter = match sel {
        Select::Run(_) => "r.run_id = ?",
        Select::LastBatch => "r.batch_id = (SELECT max(batch_id) FROM runs) AND ? = ?",
        Select::All => "? = ?",
    };
    let sql = format!(
        "SELECT r.run_id, r.board, r.model, r.quant, r.status, s.ttft_ms, s.itl_p50_ms, s.tokens_per_s, s.e2e_ms,
                s.avg_power_mw, s.energy_per_token_mj, s.ram_peak_kb, r.simulated, r.tokenizer,
                r.output_text
         FROM runs r LEFT JOIN run_summary s USING (run_id) WHERE {filter} ORDER BY r.run_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let map = |r: &duckdb::Row<'_>| {
        Ok(RunRow {
            run_id: r.get(0)?,
            board: r.get(1)?,
            model: r.get(2)?,
            quant: r.get(3)?,
            status: r.get(4)?,
            ttft_ms: r.get(5)?,
            itl_p50_ms: r.get(6)?,
            tokens_per_s: r.get(7)?,
            e2e_ms: r.get(8)?,
            avg_power_mw: r.get(9)?,
            energy_per_token_mj: r.get(10)?,
            ram_peak_kb: r.get(11)?,
            simulated: r.get(12)?,
            tokenizer: r.get(13)?,
            output_text: r.get(14)?,
        })
    };
    let rows = match sel {
        Select::Run(id) => stmt
            .query_map([id.as_str()], map)?
            .collect::<Result<Vec<_>, _>>()?,
        _ => stmt
            .query_map(["1", "1"], map)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

fn series(conn: &Connection, sql: &str, run: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut stmt = conn.prepare(sql)?;
    let v = stmt
        .query_map([run], |r| Ok((r.get::<_, f64>(0)?, r.get::<_, f64>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// A chart frame: `w`×`h` pixels with margins, mapping data ranges onto it.
struct Frame {
    w: f64,
    h: f64,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    const L: f64 = 56.0;
    const B: f64 = 30.0;
    const T: f64 = 10.0;
    const R: f64 = 10.0;

    fn x(&self, v: f64) -> f64 {
        Self::L + (v - self.x0) / (self.x1 - self.x0).max(1e-12) * (self.w - Self::L - Self::R)
    }
    fn y(&self, v: f64) -> f64 {
        self.h
            - Self::B
            - (v - self.y0) / (self.y1 - self.y0).max(1e-12) * (self.h - Self::B - Self::T)
    }
    fn open(&self, out: &mut String, class: &str, title: &str, xlabel: &str, ylabel: &str) {
        let _ = write!(
            out,
            r#"<svg class="{class}" role="img" aria-label="{}" viewBox="0 0 {w} {h}" width="{w}" height="{h}"><rect x="{l}" y="{t}" width="{pw}" height="{ph}" class="plot"/>"#,
            esc(title),
            w = self.w,
            h = self.h,
            l = Self::L,
            t = Self::T,
            pw = self.w - Self::L - Self::R,
            ph = self.h - Self::B - Self::T
        );
        // Axis labels and the range at each end.
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="ax">{}</text><text x="{}" y="{}" class="ax" text-anchor="end">{}</text><text x="{}" y="{}" class="ax" text-anchor="middle">{}</text><text x="4" y="{}" class="ax">{}</text><text x="4" y="{}" class="ax">{}</text><text x="4" y="14" class="ax">{}</text>"#,
            Self::L,
            self.h - 8.0,
            fmt_num(self.x0),
            self.w - Self::R,
            self.h - 8.0,
            fmt_num(self.x1),
            (self.w + Self::L) / 2.0,
            self.h - 8.0,
            esc(xlabel),
            self.h - Self::B,
            fmt_num(self.y0),
            Self::T + 24.0,
            fmt_num(self.y1),
            esc(ylabel)
        );
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Power trace with prefill/decode shading and a tick per generated token.
fn trace_svg(out: &mut String, power: &[(f64, f64)], toks: &[(f64, f64)], ttft_ms: Option<f64>) {
    // The run spans t = 0 to its last token; the samples just outside it (taken so that short
    // runs are covered) are cut at its edges.
    let end_us = match toks.iter().map(|t| t.0).reduce(f64::max) {
        Some(e) => e,
        None => power.iter().map(|p| p.0).fold(0.0, f64::max),
    }
    .max(1.0);
    let power = clip(power, 0.0, end_us);
    let t_end = end_us / 1000.0;
    let pmax = power.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let f = Frame {
        w: 760.0,
        h: 200.0,
        x0: 0.0,
        x1: t_end,
        y0: 0.0,
        y1: pmax,
    };
    f.open(out, "trace", "power trace", "ms from prompt", "mW");
    if let Some(ttft) = ttft_ms {
        let _ = write!(
            out,
            r#"<rect class="prefill" x="{:.1}" y="{}" width="{:.1}" height="{}"/><rect class="decode" x="{:.1}" y="{}" width="{:.1}" height="{}"/>"#,
            f.x(0.0),
            Frame::T,
            (f.x(ttft) - f.x(0.0)).max(0.0),
            f.h - Frame::B - Frame::T,
            f.x(ttft),
            Frame::T,
            (f.x(t_end) - f.x(ttft)).max(0.0),
            f.h - Frame::B - Frame::T
        );
    }
    let pts: Vec<String> = power
        .iter()
        .map(|p| format!("{:.1},{:.1}", f.x(p.0 / 1000.0), f.y(p.1)))
        .collect();
    let _ = write!(
        out,
        r#"<polyline class="power" data-points="{}" points="{}"/>"#,
        pts.len(),
        pts.join(" ")
    );
    for (t, _) in toks.iter().filter(|t| t.1 > 0.5) {
        let x = f.x(t / 1000.0);
        let _ = write!(
            out,
            r#"<line class="tok" x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}"/>"#,
            f.h - Frame::B,
            f.h - Frame::B - 8.0
        );
    }
    out.push_str("</svg>");
}

/// The part of a time series (sorted by time) inside `[lo, hi]`, with the points at `lo` and `hi`
/// interpolated from the samples on either side.
fn clip(pts: &[(f64, f64)], lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let at = |a: (f64, f64), b: (f64, f64), t: f64| {
        let k = if b.0 > a.0 {
            (t - a.0) / (b.0 - a.0)
        } else {
            0.0
        };
        (t, a.1 + (b.1 - a.1) * k)
    };
    let mut out = vec![];
    for (i, &p) in pts.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| pts[j]);
        if let Some(q) = prev {
            if q.0 < lo && p.0 > lo {
                out.push(at(q, p, lo));
            }
        }
        if (lo..=hi).contains(&p.0) {
            out.push(p);
        }
        if let Some(q) = prev {
            if q.0 < hi && p.0 > hi {
                out.push(at(q, p, hi));
            }
        }
    }
    out
}

/// Vertical bars; labels under each.
fn bars_svg(
    out: &mut String,
    class: &str,
    bar_class: &str,
    title: &str,
    ylabel: &str,
    bars: &[(String, f64)],
) {
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let f = Frame {
        w: 760.0,
        h: 240.0,
        x0: 0.0,
        x1: bars.len().max(1) as f64,
        y0: 0.0,
        y1: max,
    };
    f.open(out, class, title, "", ylabel);
    let bw = (f.x(1.0) - f.x(0.0)) * 0.7;
    for (i, (label, v)) in bars.iter().enumerate() {
        let x = f.x(i as f64) + bw * 0.2;
        let _ = write!(
            out,
            r#"<rect class="{bar_class}" data-value="{v}" x="{x:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" class="lbl" text-anchor="middle">{}</text>"#,
            f.y(*v),
            (f.y(0.0) - f.y(*v)).max(0.0),
            esc(label),
            fmt_num(*v),
            x + bw / 2.0,
            f.h - Frame::B + 12.0,
            esc(&label.chars().take(24).collect::<String>())
        );
    }
    out.push_str("</svg>");
}

/// `labctl report`
pub fn cmd_report(
    lab_path: &Path,
    db: Option<std::path::PathBuf>,
    sel: Select,
    format: &str,
    output: &Path,
) -> anyhow::Result<()> {
    let path = db_path(lab_path, db)?;
    let conn = open_read_only(&path, false)?;
    let rows = runs(&conn, &sel)?;
    if rows.is_empty() {
        return Err(BadInput(format!("no runs selected in {}", path.display())).into());
    }
    let text = match format {
        "json" => serde_json::to_string_pretty(&rows)?,
        "csv" => {
            let mut s = String::from("run_id,board,model,quant,status,ttft_ms,itl_p50_ms,tokens_per_s,e2e_ms,avg_power_mw,energy_per_token_mj,ram_peak_kb,simulated,tokenizer,output_text\n");
            // Text fields quoted as RFC 4180 has it (generated text holds commas and quotes).
            let q = |v: Option<&str>| {
                v.map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
                    .unwrap_or_default()
            };
            let o = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
            for r in &rows {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.run_id,
                    r.board,
                    r.model.as_deref().unwrap_or(""),
                    r.quant.as_deref().unwrap_or(""),
                    r.status,
                    o(r.ttft_ms),
                    o(r.itl_p50_ms),
                    o(r.tokens_per_s),
                    o(r.e2e_ms),
                    o(r.avg_power_mw),
                    o(r.energy_per_token_mj),
                    o(r.ram_peak_kb),
                    r.simulated.map(|b| b.to_string()).unwrap_or_default(),
                    q(r.tokenizer.as_deref()),
                    q(r.output_text.as_deref())
                );
            }
            s
        }
        _ => html(&conn, &rows)?,
    };
    std::fs::write(output, text)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", output.display()))?;
    eprintln!("{} run(s) → {}", rows.len(), output.display());
    Ok(())
}

fn html(conn: &Connection, rows: &[RunRow]) -> anyhow::Result<String> {
    let mut h = String::new();
    h.push_str(r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>labctl report</title><style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}
svg{display:block;margin:6px 0 14px}.plot{fill:#fcfcfc;stroke:#999}.ax,.lbl{font-size:10px;fill:#555}
.power{fill:none;stroke:#c0392b;stroke-width:1.2}.tok{stroke:#2c3e50;stroke-width:1}.prefill{fill:#f5e6b8;opacity:.6}.decode{fill:#d6eaf8;opacity:.6}
.bar{fill:#2e86c1}.hist{fill:#8e44ad}.pt{fill:#7f8c8d}.pareto{fill:#27ae60}
.op-matmul{fill:#2e86c1}.op-attention{fill:#e67e22}.op-norm{fill:#16a085}.op-other{fill:#95a5a6}.note{color:#666;font-size:12px}
</style></head><body>"#);
    let simulated = rows.iter().any(|r| r.simulated == Some(true));
    let _ = write!(
        h,
        "<h1>labctl report</h1><p class=\"note\">{} run(s){}</p>",
        rows.len(),
        if simulated {
            " — includes emulated boards: their timings are the host CPU's, not the real chips'"
        } else {
            ""
        }
    );
    // Summary table.
    h.push_str("<h2>Runs</h2><table><tr><th>run</th><th>board</th><th>model</th><th>status</th><th>TTFT ms</th><th>ITL p50 ms</th><th>tokens/s</th><th>avg mW</th><th>mJ/token</th><th>RAM KiB</th></tr>");
    let o = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "–".into());
    for r in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.run_id),
            esc(&r.board),
            esc(r.model.as_deref().unwrap_or("–")),
            esc(&r.status),
            o(r.ttft_ms),
            o(r.itl_p50_ms),
            o(r.tokens_per_s),
            o(r.avg_power_mw),
            o(r.energy_per_token_mj),
            o(r.ram_peak_kb)
        );
    }
    h.push_str("</table>");
    // What models with a real tokenizer generated (byte-level presets generate noise).
    let texts: Vec<&RunRow> = rows
        .iter()
        .filter(|r| {
            r.tokenizer.as_deref().is_some_and(|t| t != "byte-level") && r.output_text.is_some()
        })
        .collect();
    if !texts.is_empty() {
        h.push_str(
            "<h2>Generated text</h2><table><tr><th>run</th><th>model</th><th>text</th></tr>",
        );
        for r in texts {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
                esc(&r.run_id),
                esc(r.model.as_deref().unwrap_or("–")),
                esc(r.output_text.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    }
    // Power traces.
    h.push_str("<h2>Power traces</h2><p class=\"note\">yellow: prefill (prompt sent → first token), blue: decode; ticks: generated tokens</p>");
    for r in rows.iter().take(MAX_TRACES) {
        let power = series(
            conn,
            "SELECT t_us::DOUBLE, power_mw FROM power_samples WHERE run_id = ? ORDER BY t_us",
            &r.run_id,
        )?;
        let toks = series(
            conn,
            "SELECT t_us::DOUBLE, CASE WHEN phase = 'decode' THEN 1.0 ELSE 0.0 END FROM tokens WHERE run_id = ? ORDER BY idx",
            &r.run_id,
        )?;
        let _ = write!(
            h,
            "<h3 class=\"note\">{} — {}</h3>",
            esc(&r.run_id),
            esc(&r.board)
        );
        trace_svg(&mut h, &power, &toks, r.ttft_ms);
    }
    if rows.len() > MAX_TRACES {
        let _ = write!(
            h,
            "<p class=\"note\">{} more runs are in the tables above.</p>",
            rows.len() - MAX_TRACES
        );
    }
    // ITL histogram over all selected runs.
    let ids: Vec<String> = rows
        .iter()
        .map(|r| format!("'{}'", r.run_id.replace('\'', "''")))
        .collect();
    let in_list = ids.join(",");
    let mut stmt = conn.prepare(&format!(
        "SELECT (t_us - lag(t_us) OVER (PARTITION BY run_id ORDER BY idx)) / 1000.0 AS gap FROM tokens
         WHERE phase = 'decode' AND run_id IN ({in_list}) QUALIFY gap IS NOT NULL"
    ))?;
    let gaps: Vec<f64> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    h.push_str("<h2>Inter-token latency</h2>");
    if gaps.is_empty() {
        h.push_str("<p class=\"note\">no decode gaps</p>");
    } else {
        let (lo, hi) = gaps
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &g| (a.min(g), b.max(g)));
        let bins = 24usize;
        let wdt = ((hi - lo) / bins as f64).max(1e-6);
        let mut counts = vec![0usize; bins];
        for g in &gaps {
            counts[(((g - lo) / wdt) as usize).min(bins - 1)] += 1;
        }
        let bars: Vec<(String, f64)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{:.2}", lo + wdt * i as f64), *c as f64))
            .collect();
        bars_svg(
            &mut h,
            "itl",
            "bar hist",
            "ITL histogram (ms, lower bin edge)",
            "tokens",
            &bars,
        );
    }
    // Operator breakdown per board × model.
    let mut stmt = conn.prepare(&format!(
        "SELECT r.board || ' ' || r.model, o.op, sum(o.cycles)::DOUBLE FROM run_ops o JOIN runs r USING (run_id)
         WHERE run_id IN ({in_list}) GROUP BY ALL ORDER BY 1, 2"
    ))?;
    let ops: Vec<(String, String, f64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    h.push_str("<h2>Operator breakdown</h2><p class=\"note\"><span style=\"color:#2e86c1\">■ matmul</span> <span style=\"color:#e67e22\">■ attention</span> <span style=\"color:#16a085\">■ norm</span> <span style=\"color:#95a5a6\">■ other</span></p>");
    let mut groups: Vec<String> = ops.iter().map(|o| o.0.clone()).collect();
    groups.dedup();
    let _ = write!(
        h,
        r#"<svg class="ops" viewBox="0 0 760 {0}" width="760" height="{0}">"#,
        24 * groups.len() + 10
    );
    for (gi, g) in groups.iter().enumerate() {
        let total: f64 = ops
            .iter()
            .filter(|o| &o.0 == g)
            .map(|o| o.2)
            .sum::<f64>()
            .max(1.0);
        let mut x = 220.0;
        let y = 6.0 + 24.0 * gi as f64;
        let _ = write!(
            h,
            r#"<text x="4" y="{:.0}" class="lbl">{}</text>"#,
            y + 13.0,
            esc(g)
        );
        for (_, op, c) in ops.iter().filter(|o| &o.0 == g) {
            let w = c / total * 520.0;
            let _ = write!(
                h,
                r#"<rect class="op-{}" data-value="{c}" x="{x:.1}" y="{y:.0}" width="{w:.1}" height="18"><title>{}: {:.1}%</title></rect>"#,
                esc(op),
                esc(op),
                c / total * 100.0
            );
            x += w;
        }
    }
    h.push_str("</svg>");
    // Comparison and Pareto over board × model.
    let mut stmt = conn.prepare(&format!(
        "SELECT board || ' ' || coalesce(quant, '?'), median(tokens_per_s), median(energy_per_token_mj)
         FROM run_summary WHERE run_id IN ({in_list}) AND tokens_per_s IS NOT NULL GROUP BY ALL ORDER BY 1"
    ))?;
    let cmp: Vec<(String, f64, Option<f64>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    h.push_str("<h2>Throughput by board and quantization</h2>");
    let bars: Vec<(String, f64)> = cmp.iter().map(|c| (c.0.clone(), c.1)).collect();
    bars_svg(
        &mut h,
        "compare",
        "bar",
        "median tokens/s",
        "tokens/s",
        &bars,
    );
    h.push_str("<h2>Latency vs energy</h2><p class=\"note\">green: Pareto-optimal (no other is both faster and more frugal)</p>");
    let pts: Vec<(String, f64, f64)> = cmp
        .iter()
        .filter_map(|c| c.2.map(|e| (c.0.clone(), 1000.0 / c.1.max(1e-9), e)))
        .collect();
    if pts.is_empty() {
        h.push_str("<p class=\"note\">no energy data</p>");
    } else {
        let (xmax, ymax) = pts
            .iter()
            .fold((0.0f64, 0.0f64), |(a, b), p| (a.max(p.1), b.max(p.2)));
        let f = Frame {
            w: 760.0,
            h: 300.0,
            x0: 0.0,
            x1: xmax * 1.2,
            y0: 0.0,
            y1: ymax * 1.2,
        };
        f.open(
            &mut h,
            "pareto",
            "latency vs energy",
            "ms per token",
            "mJ per token",
        );
        for (i, p) in pts.iter().enumerate() {
            let dominated = pts
                .iter()
                .enumerate()
                .any(|(j, q)| j != i && q.1 <= p.1 && q.2 <= p.2 && (q.1 < p.1 || q.2 < p.2));
            let _ = write!(
                h,
                r#"<circle class="{}" data-x="{}" data-y="{}" cx="{:.1}" cy="{:.1}" r="5"><title>{}</title></circle><text x="{:.1}" y="{:.1}" class="lbl">{}</text>"#,
                if dominated { "pt" } else { "pt pareto" },
                p.1,
                p.2,
                f.x(p.1),
                f.y(p.2),
                esc(&p.0),
                f.x(p.1) + 7.0,
                f.y(p.2) - 6.0,
                esc(&p.0)
            );
        }
        h.push_str("</svg>");
    }
    h.push_str("<p class=\"note\">Generated by labctl. All charts are inline SVG; nothing is fetched when this file is viewed.</p></body></html>");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn a_trace_is_cut_at_the_run_edges_by_interpolation() {
        // Samples before, inside and after a run from 0 to 10.
        let pts = [(-5.0, 100.0), (5.0, 200.0), (15.0, 100.0)];
        assert_eq!(
            clip(&pts, 0.0, 10.0),
            vec![(0.0, 150.0), (5.0, 200.0), (10.0, 150.0)]
        );
        // A run shorter than the sample period: both edges from one pair.
        assert_eq!(
            clip(&[(-10.0, 0.0), (30.0, 400.0)], 0.0, 10.0),
            vec![(0.0, 100.0), (10.0, 200.0)]
        );
        assert!(clip(&[], 0.0, 1.0).is_empty());
    }
}
