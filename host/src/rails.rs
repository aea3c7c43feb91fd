//! Simulated supply rails: what the shunt of an emulated board sees. A rail is a step function of
//! host time (CLOCK_MONOTONIC ns): the host sets it from relay state, and an emulated board's
//! power model (in its platform plugin) sets it from the firmware's compute phases. Every step is
//! kept, so the exact energy a run drew is known and stored as ground truth.

use std::sync::{Arc, Mutex};

use abi_stable::sabi_trait::TD_Opaque;
use labctl_plugin_api::{
    RailControl, RailControlBox, RailControl_TO, RailPoint, SupplyRail, SupplyRailBox,
    SupplyRail_TO,
};

use crate::clock;

/// One step: from `t_ns` on the rail is at `point`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub t_ns: u64,
    pub point: RailPoint,
}

/// A rail whose state chips sample and power models set.
pub struct Rail {
    steps: Mutex<Vec<Step>>,
}

impl Rail {
    /// A rail at `volts`/`amps` from now on.
    pub fn new(volts: f64, amps: f64) -> Arc<Rail> {
        let r = Arc::new(Rail {
            steps: Mutex::new(Vec::new()),
        });
        r.set(volts, amps);
        r
    }

    /// Sets the rail from now on.
    pub fn set(&self, volts: f64, amps: f64) {
        self.set_at(
            clock::monotonic_ns(),
            RailPoint {
                bus_volts: volts,
                amps,
            },
        );
    }

    /// Sets the rail from `t_ns` on. Steps may arrive slightly out of order (a power model's
    /// edge is reported after it happened); they are kept sorted.
    pub fn set_at(&self, t_ns: u64, point: RailPoint) {
        let mut s = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let i = s.partition_point(|x| x.t_ns <= t_ns);
        s.insert(i, Step { t_ns, point });
    }

    /// The rail at `t_ns`.
    pub fn at(&self, t_ns: u64) -> RailPoint {
        let s = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let i = s.partition_point(|x| x.t_ns <= t_ns);
        match i {
            0 => s.first().map(|x| x.point),
            _ => Some(s[i - 1].point),
        }
        .unwrap_or(RailPoint {
            bus_volts: 0.0,
            amps: 0.0,
        })
    }

    /// The steps covering `[from_ns, to_ns]`: the one in effect at `from_ns` (moved to it) and
    /// every later one up to `to_ns`.
    pub fn steps_between(&self, from_ns: u64, to_ns: u64) -> Vec<Step> {
        let s = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let i = s.partition_point(|x| x.t_ns <= from_ns);
        let mut out = Vec::new();
        if i > 0 {
            out.push(Step {
                t_ns: from_ns,
                point: s[i - 1].point,
            });
        }
        out.extend(s[i..].iter().take_while(|x| x.t_ns <= to_ns).copied());
        out
    }

    /// What a sensor chip on this rail reads.
    pub fn boxed(self: &Arc<Self>) -> SupplyRailBox {
        SupplyRail_TO::from_value(RailHandle(self.clone()), TD_Opaque)
    }

    /// The handle a board's power model drives.
    pub fn control(self: &Arc<Self>) -> RailControlBox {
        RailControl_TO::from_value(RailHandle(self.clone()), TD_Opaque)
    }
}

struct RailHandle(Arc<Rail>);

impl SupplyRail for RailHandle {
    fn at(&self, t_ns: u64) -> RailPoint {
        self.0.at(t_ns)
    }
}

impl RailControl for RailHandle {
    fn set(&self, t_ns: u64, point: RailPoint) {
        self.0.set_at(t_ns, point);
    }
}

/// Energy in millijoules a rail delivered from its first step to `to_ns`.
#[cfg(test)]
pub fn energy_mj(steps: &[Step], to_ns: u64) -> f64 {
    let mut e = 0.0;
    for (i, s) in steps.iter().enumerate() {
        let end = steps.get(i + 1).map_or(to_ns, |n| n.t_ns).min(to_ns);
        if end > s.t_ns {
            e += s.point.bus_volts * s.point.amps * (end - s.t_ns) as f64 / 1e6;
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: f64, a: f64) -> RailPoint {
        RailPoint {
            bus_volts: v,
            amps: a,
        }
    }

    #[test]
    fn steps_are_a_step_function_of_time() {
        let r = Rail::new(5.0, 0.0);
        let t0 = clock::monotonic_ns() + 1_000_000;
        r.set_at(t0 + 2000, p(5.0, 0.1));
        r.set_at(t0, p(5.0, 0.02)); // late report of an earlier edge
        assert_eq!(r.at(t0 - 1).amps, 0.0);
        assert_eq!(r.at(t0 + 1000).amps, 0.02);
        assert_eq!(r.at(t0 + 5000).amps, 0.1);
        let st = r.steps_between(t0 + 1000, t0 + 10_000);
        assert_eq!(st.len(), 2);
        // 0.1 W for 1 µs + 0.5 W for 8 µs = 4.1 µJ
        assert!((energy_mj(&st, t0 + 10_000) - 0.0041).abs() < 1e-12);
    }
}
