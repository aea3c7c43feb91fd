//! Bringing a hung board back: after a run ended by silence past the hang timeout (or the
//! board died), labctl escalates — **reset** (the platform's probe, or the lab file's `reset`),
//! **power cycle** (the relay; an emulated board is stopped and started again), **reflash**
//! (bring-up again: flash, or start the emulator anew) — each step stored in `board_events`
//! (`recovering`, the step as reason code) and published, each followed by the handshake. A
//! board none of them brings back is **quarantined** ([`crate::quarantine`]): out of service
//! until `labctl boards release`.

use std::time::Instant;

use labctl_plugin_api::{BoardSessionBox, ErrorKind};

use crate::{
    console::{self, Link},
    quarantine,
    records::BoardState,
};

use super::*;

impl BoardJob<'_> {
    /// One recovery step's action; `None` when this board has no way to take it.
    fn step(
        &self,
        step: &str,
        session: &mut BoardSessionBox,
        console: &console::Console,
    ) -> Option<Result<(), String>> {
        match step {
            "reset" => match session.reset().into_result() {
                Ok(_) => Some(Ok(())),
                Err(e) if e.kind == ErrorKind::Unsupported => {
                    if self.board.reset == lab_config::Reset::None {
                        None
                    } else {
                        Some(self.reset(console).map_err(|f| f.why))
                    }
                }
                Err(e) => Some(Err(e.message.to_string())),
            },
            "power-cycle" => {
                if self.profile.emulated {
                    // An emulated board's supply is its process: stop it, start it again.
                    let _ = session.power_off();
                    Some(
                        session
                            .bootstrap()
                            .into_result()
                            .map(|_| ())
                            .map_err(|e| e.message.to_string()),
                    )
                } else if self.board.relay.is_some() {
                    Some(
                        self.power(false)
                            .and_then(|_| {
                                std::thread::sleep(POWER_CYCLE_OFF);
                                self.power(true)
                            })
                            .map_err(|f| f.why),
                    )
                } else {
                    None
                }
            }
            _ => {
                let _ = session.power_off();
                Some(
                    session
                        .bootstrap()
                        .into_result()
                        .map(|_| ())
                        .map_err(|e| e.message.to_string()),
                )
            }
        }
    }

    /// Escalates until the board answers the handshake again: true when it is back (ready for
    /// the next run), false when it is quarantined (or labctl is stopping).
    pub(super) fn recover(
        &self,
        session: &mut BoardSessionBox,
        console: &mut console::Console,
        link: &mut Link,
        emulator_baud: Option<u32>,
        m: &ModelPlan,
        hang: &str,
    ) -> bool {
        let name = self.name().to_string();
        let t_hang = Instant::now();
        let mut tried = vec![];
        for step in ["reset", "power-cycle", "reflash"] {
            if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            let event = Fault {
                status: "error",
                code: step_code(step),
                why: format!("hung ({hang}): trying {step}"),
            };
            let Some(done) = self.step(step, session, console) else {
                continue;
            };
            self.moved(BoardState::Recovering, None, Some(&event));
            self.progress
                .note(&format!("{name}: hung ({hang}): {step}"));
            let back = done.and_then(|_| {
                // An emulator that was started again made a new console.
                if let Some(baud) = emulator_baud {
                    let path = session
                        .console_path()
                        .into_option()
                        .ok_or("the platform named no console")?;
                    *console = console::open_path(std::path::Path::new(path.as_str()), baud)?;
                }
                *link = console.link().map_err(|e| format!("serial: {e}"))?;
                self.handshake(link, session, m)
                    .map(|_| ())
                    .map_err(|f| f.why)
            });
            match back {
                Ok(()) => {
                    let secs = t_hang.elapsed().as_secs_f64();
                    self.progress
                        .note(&format!("{name}: recovered by {step} in {secs:.2} s"));
                    self.moved(BoardState::Ready, None, None);
                    return true;
                }
                Err(why) => tried.push(format!("{step}: {why}")),
            }
        }
        let reason = if tried.is_empty() {
            format!("hung ({hang}); it has no reset, relay or re-flash to recover with")
        } else {
            format!("hung ({hang}); {}", tried.join("; "))
        };
        let f = Fault {
            status: "error",
            code: "quarantined",
            why: reason.clone(),
        };
        if let Err(e) = quarantine::put(self.lab, &name, &reason) {
            self.progress
                .note(&format!("{name}: could not record the quarantine: {e:#}"));
        }
        self.moved(BoardState::Quarantined, None, Some(&f));
        self.progress.note(&format!(
            "{name}: quarantined: {reason}; `labctl boards release {name}` puts it back"
        ));
        false
    }
}

fn step_code(step: &str) -> &'static str {
    match step {
        "reset" => "reset",
        "power-cycle" => "power-cycle",
        _ => "reflash",
    }
}
