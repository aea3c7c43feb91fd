//! Simulated supply rails: what the shunt of an emulated board sees. For now the model is the
//! board's idle current at its supply voltage while its relay is on, and nothing while it is off;
//! the profiling-run model (compute phases) builds on the same rail.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use abi_stable::sabi_trait::TD_Opaque;
use labctl_plugin_api::{RailPoint, SupplyRail, SupplyRailBox, SupplyRail_TO};

/// A rail whose voltage and current can be set while chips sample it.
#[derive(Default)]
pub struct Rail {
    volts: AtomicU64,
    amps: AtomicU64,
}

impl Rail {
    pub fn new(volts: f64, amps: f64) -> Arc<Rail> {
        let r = Arc::new(Rail::default());
        r.set(volts, amps);
        r
    }

    pub fn set(&self, volts: f64, amps: f64) {
        self.volts.store(volts.to_bits(), Ordering::Relaxed);
        self.amps.store(amps.to_bits(), Ordering::Relaxed);
    }

    pub fn point(&self) -> RailPoint {
        RailPoint {
            bus_volts: f64::from_bits(self.volts.load(Ordering::Relaxed)),
            amps: f64::from_bits(self.amps.load(Ordering::Relaxed)),
        }
    }

    pub fn boxed(self: &Arc<Self>) -> SupplyRailBox {
        SupplyRail_TO::from_value(RailHandle(self.clone()), TD_Opaque)
    }
}

struct RailHandle(Arc<Rail>);

impl SupplyRail for RailHandle {
    fn at(&self, _t_ns: u64) -> RailPoint {
        self.0.point()
    }
}
