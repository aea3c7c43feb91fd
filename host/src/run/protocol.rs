//! The protocol client of a board session: the handshake (protocol version, the model the board
//! holds and its CRC-32) and one prompt's exchange (token events, operator breakdown, memory)
//! with the outcome of each way it can end.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use fwcore::proto::PROTOCOL_VERSION;
use labctl_plugin_api::BoardSessionBox;

use crate::{
    clock,
    console::{Link, LinkEnd, RxFrame},
    window::Window,
};

use super::*;

/// How often the handshake repeats an unanswered HELLO.
const RESEND: Duration = Duration::from_millis(200);

impl BoardJob<'_> {
    /// Waits for the board's boot banner, checks the protocol and the model it loaded.
    pub(super) fn handshake(
        &self,
        link: &mut Link,
        session: &mut BoardSessionBox,
        m: &ModelPlan,
    ) -> Result<Ready, Fault> {
        self.progress.set(self.name(), "booting", 0, 0);
        let deadline = Instant::now() + self.args.boot_timeout;
        let stop = || self.stop.load(Ordering::Relaxed);
        let mut alive = || into_reason(session.check());
        // `resend`: repeat the request every RESEND until the answer comes. A board that booted
        // before its console was opened sent its READY to nobody, and an emulator's pty may not
        // read what the host writes until it notices the host (QEMU polls for that once a
        // second), so one HELLO can go unheard.
        let mut ask =
            |link: &mut Link, kind: &str, want: &str, resend: bool| -> Result<RxFrame, Fault> {
                let send = |link: &mut Link| {
                    link.send(kind, &[("proto", &PROTOCOL_VERSION)])
                        .map_err(|e| {
                            Fault::error(
                                "console",
                                format!("console lost during boot: serial write failed: {e}"),
                            )
                        })
                };
                send(link)?;
                let mut next_send = Instant::now() + RESEND;
                loop {
                    let until = if resend {
                        deadline.min(next_send)
                    } else {
                        deadline
                    };
                    let f = match link.next(until, &mut alive, &stop) {
                        Err(LinkEnd::Timeout) if until < deadline => {
                            send(link)?;
                            next_send = Instant::now() + RESEND;
                            continue;
                        }
                        other => other,
                    };
                    let f = f.map_err(|e| match e {
                        LinkEnd::Timeout => Fault::failed(
                            "boot-timeout",
                            format!(
                                "no {want} from the board within {:.0?} of power on",
                                self.args.boot_timeout
                            ),
                        ),
                        LinkEnd::Dead(why) => {
                            Fault::failed("board-died", format!("board died during boot: {why}"))
                        }
                        LinkEnd::Lost(why) => {
                            Fault::error("console", format!("console lost during boot: {why}"))
                        }
                        LinkEnd::Stopped => Fault {
                            status: "aborted",
                            code: "interrupted",
                            why: "interrupted".into(),
                        },
                    })?;
                    match f.frame().kind {
                        k if k == want => return Ok(f),
                        "ERR" => {
                            return Err(Fault::failed(
                                "board-error",
                                format!(
                                    "board refused {kind}: {}",
                                    f.frame().get("what").unwrap_or("?")
                                ),
                            ))
                        }
                        _ => continue,
                    }
                }
            };
        let ready = ask(link, "HELLO", "READY", true)?;
        let fr = ready.frame();
        let proto = fr
            .u32("proto")
            .map_err(|_| Fault::failed("protocol", "READY without proto"))?;
        if proto != PROTOCOL_VERSION {
            return Err(Fault::failed(
                "protocol",
                format!(
                    "board speaks protocol {proto}, this labctl speaks {PROTOCOL_VERSION}: rebuild or reflash its firmware"
                ),
            ));
        }
        // A flashed board must come back as what was flashed.
        if let Some(want) = &self.profile.banner {
            let got = fr.get("platform").unwrap_or("");
            if got != want {
                return Err(Fault::failed(
                    "wrong-banner",
                    format!(
                        "the board answered as {got:?}, expected {want:?}: another image, or another board on this console"
                    ),
                ));
            }
        }
        let (ram, flash) = (fr.u64("ram").unwrap_or(0), fr.u64("flash").unwrap_or(0));
        // The kernel variant is part of what ran: `0.1.0+dsp` tells DSP builds apart in `runs`.
        let fw = match (fr.get("fw").unwrap_or("?"), fr.get("kernels")) {
            (v, Some(k)) if k != "plain" => format!("{v}+{k}"),
            (v, _) => v.to_string(),
        };
        let info = ask(link, "INFO", "MODEL", false)?;
        let f = info.frame();
        let want = &m.file.cfg;
        let same = f.get("quant") == Some(want.quant.name())
            && f.u32("dim") == Ok(want.dim)
            && f.u32("layers") == Ok(want.n_layers)
            && f.u32("vocab") == Ok(want.vocab_size);
        let crc32 = f.get("crc32").and_then(|c| u32::from_str_radix(c, 16).ok());
        let ours = fwcore::crc::crc32(&m.file.bytes);
        if !same || crc32 != Some(ours) {
            return Err(Fault::failed(
                "model-mismatch",
                format!(
                    "the board holds another model than {} (crc32 {ours:08x}): the board's has crc32 {} ({}); flash that model onto the board, or run with the model the board holds",
                    m.file.path.display(),
                    crc32.map_or("?".into(), |c| format!("{c:08x}")),
                    String::from_utf8_lossy(&info.line).trim_end()
                ),
            ));
        }
        Ok(Ready {
            firmware: fw,
            ram,
            flash,
            crc32,
        })
    }

    /// Silence after which the board is hung mid-run: its `hang_timeout_s`, or the run's token
    /// timeout.
    pub(super) fn hang_timeout(&self) -> std::time::Duration {
        self.board.hang_timeout.unwrap_or(self.args.token_timeout)
    }

    /// One prompt: send it, collect token events until `DONE`.
    pub(super) fn one_run(
        &self,
        link: &mut Link,
        session: &mut BoardSessionBox,
        m: &ModelPlan,
        run_id: Option<Arc<str>>,
        window: &Window,
        label: &str,
    ) -> RunResult {
        let name = self.name().to_string();
        let n = m.prompt_ids.len();
        let total = (n + self.args.tokens as usize) as u32;
        // Warm-up runs are not measured: no window, t = 0 is now.
        let t0 = match &run_id {
            Some(id) => window.open(id.clone()),
            None => Instant::now(),
        };
        let mut res = RunResult {
            toks: vec![],
            ops: None,
            mem: None,
            temps: vec![],
            outcome: Outcome {
                status: "ok",
                error: None,
                code: None,
            },
            t0_ns: clock::ns_of(t0),
            end: t0,
            garbage_before: link.garbage(),
        };
        let fail = |res: &mut RunResult, status: &'static str, code: &'static str, why: String| {
            res.outcome = Outcome {
                status,
                error: Some(why),
                code: Some(code),
            };
        };
        let sent = (|| -> std::io::Result<()> {
            match m.eos {
                Some(eos) => link.send(
                    "PROMPT",
                    &[("gen", &self.args.tokens), ("n", &n), ("eos", &eos)],
                )?,
                None => link.send("PROMPT", &[("gen", &self.args.tokens), ("n", &n)])?,
            }
            for chunk in m.prompt_ids.chunks(IDS_PER_FRAME) {
                let ids = chunk
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                link.send("IDS", &[("ids", &ids)])?;
            }
            Ok(())
        })();
        if let Err(e) = sent {
            fail(
                &mut res,
                "error",
                "console",
                format!("console lost mid-run: serial write failed: {e}"),
            );
        }
        let stop = || self.stop.load(Ordering::Relaxed);
        let mut alive = || into_reason(session.check());
        while res.outcome.error.is_none() {
            let deadline = Instant::now() + self.hang_timeout();
            let f = match link.next(deadline, &mut alive, &stop) {
                Ok(f) => f,
                Err(LinkEnd::Timeout) => {
                    fail(
                        &mut res,
                        "failed",
                        "token-timeout",
                        format!(
                            "no answer from the board for {:.1?} (hung)",
                            self.hang_timeout()
                        ),
                    );
                    break;
                }
                Err(LinkEnd::Dead(why)) => {
                    fail(
                        &mut res,
                        "failed",
                        "board-died",
                        format!("board died mid-run: {why}"),
                    );
                    break;
                }
                Err(LinkEnd::Lost(why)) => {
                    fail(
                        &mut res,
                        "error",
                        "console",
                        format!("console lost mid-run: {why}"),
                    );
                    break;
                }
                Err(LinkEnd::Stopped) => {
                    // Stopped because the results database failed, or by the user.
                    match crate::store::writer_failure() {
                        Some(why) => fail(&mut res, "error", "storage", why),
                        None => fail(
                            &mut res,
                            "aborted",
                            "interrupted",
                            "interrupted by the user".into(),
                        ),
                    }
                    break;
                }
            };
            let fr = f.frame();
            match fr.kind {
                "TOK" => {
                    let (Ok(i), Ok(us), Ok(id)) = (fr.u32("i"), fr.u64("us"), fr.u32("id")) else {
                        continue;
                    };
                    res.toks.push(Tok {
                        idx: i as i32,
                        decode: fr.get("ph") == Some("d"),
                        id: id as i32,
                        cycles: fr.u64("cyc").ok().map(|c| c as i64),
                        board_us: us,
                        rx: f.at,
                    });
                    let done = res.toks.len() as u32;
                    if done.is_multiple_of(4) || done == total {
                        let phase = if res.toks.last().is_some_and(|t| t.decode) {
                            "decode"
                        } else {
                            "prefill"
                        };
                        self.progress
                            .set(&name, format!("{label} {phase}"), done, total);
                    }
                }
                "OPS" => {
                    let g = |k: &str| fr.u64(k).unwrap_or(0) as i64;
                    res.ops = Some([
                        ("matmul".into(), g("matmul")),
                        ("attention".into(), g("attention")),
                        ("norm".into(), g("norm")),
                        ("other".into(), g("other")),
                    ]);
                }
                "MEM" => {
                    let g = |k: &str| fr.u64(k).unwrap_or(0) as i64;
                    res.mem = Some((g("static"), g("heap"), g("stack"), g("model"), g("code")));
                }
                "TEMP" => {
                    // Bounded: a board that floods TEMP frames keeps its first and last.
                    if let Some(c) = fr.get("c").and_then(|v| v.parse::<f64>().ok()) {
                        if c.is_finite() && (-100.0..=250.0).contains(&c) {
                            if res.temps.len() >= 2 {
                                res.temps.pop();
                            }
                            res.temps.push(c);
                        }
                    }
                }
                "DONE" => break,
                "ERR" => {
                    let what = fr.get("what").unwrap_or("?").to_string();
                    fail(
                        &mut res,
                        "failed",
                        "board-error",
                        format!("board error: {what}"),
                    );
                }
                _ => {}
            }
        }
        res.end = Instant::now();
        if run_id.is_some() {
            // Interrupted, nobody waits for the sample after the run's end.
            window.close(res.end, !stop());
            // The tokens are complete but the power data is cut short or missing: the status says
            // so, and `compare` (ok runs only) leaves such a run's energy out.
            if let (Some(why), "ok") = (window.failure(), res.outcome.status) {
                fail(
                    &mut res,
                    "partial",
                    "sensor",
                    format!("power sensor failed: {why}; no power data from then on"),
                );
            }
        }
        res
    }
}
