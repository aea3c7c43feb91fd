//! Resolving a lab against the loaded plugins: which boards and sensors are faulted (and why), and
//! the buses, simulated chips and rails that sensors are opened on.

use std::{collections::HashMap, path::Path, sync::Arc};

use lab_config::{BusKind, ErrorKind, Lab, Sensor};
use labctl_plugin_api::PowerSensorBox;

use crate::{
    bus::{LinuxBus, SimBus},
    error::BadInput,
    lab::load,
    plugins::{sensor_config, Catalog, Plugins},
    rails::Rail,
    relay,
};

/// The lab's sensors (of `names`, in lab order) grouped by chip: entries that share a bus and
/// address are channels of one chip, ordered by channel.
pub fn chips<'a>(lab: &'a Lab, names: &[String]) -> Vec<Vec<&'a Sensor>> {
    let mut out: Vec<Vec<&Sensor>> = vec![];
    for s in lab.sensors.iter().filter(|s| names.contains(&s.name)) {
        match out
            .iter_mut()
            .find(|c| c[0].bus == s.bus && c[0].address == s.address)
        {
            Some(c) => c.push(s),
            None => out.push(vec![s]),
        }
    }
    for c in &mut out {
        c.sort_by_key(|s| s.channel);
    }
    out
}

/// A lab with its plugins: what can be used and what is faulted.
pub struct Runtime {
    pub lab: Lab,
    pub plugins: Plugins,
    /// Reason per faulted sensor name.
    pub sensor_faults: HashMap<String, String>,
    /// Reason per faulted board name.
    pub board_faults: HashMap<String, String>,
}

impl Runtime {
    /// Loads the lab and its plugins. Mistakes in the file are bad input; names that no loaded
    /// plugin provides fault only the sensors and boards that use them.
    pub fn open(path: &Path) -> anyhow::Result<Runtime> {
        let lab = load(path)?;
        let plugins = Plugins::load(lab.plugin_dirs.as_deref());
        let mut rt = Runtime {
            lab,
            plugins,
            sensor_faults: HashMap::new(),
            board_faults: HashMap::new(),
        };
        let errors = rt.lab.check_with(&Catalog(&rt.plugins));
        let invalid: Vec<String> = errors
            .iter()
            .filter(|e| e.kind == ErrorKind::Invalid)
            .map(ToString::to_string)
            .collect();
        if !invalid.is_empty() {
            return Err(BadInput(invalid.join("\n")).into());
        }
        for s in &rt.lab.sensors {
            if rt.plugins.sensor_plugin(&s.chip).is_none() {
                let why = rt.plugins.why_missing(&format!("chip {:?}", s.chip));
                rt.sensor_faults.insert(s.name.clone(), why);
            }
        }
        for b in &rt.lab.boards {
            if rt.plugins.platform(&b.platform).is_none() {
                let why = rt
                    .plugins
                    .why_missing(&format!("platform {:?}", b.platform));
                rt.board_faults.insert(b.name.clone(), why);
            }
        }
        Ok(rt)
    }

    pub fn sensor_is_simulated(&self, s: &Sensor) -> bool {
        matches!(
            self.lab.bus(&s.bus).map(|b| &b.kind),
            Some(BusKind::Simulated) | None
        )
    }
}

enum BusSlot {
    Sim(Arc<SimBus>),
    Linux(LinuxBus),
    Failed(String),
}

/// The buses, simulated chips and rails sensors are opened on, for one command's lifetime.
pub struct Rig {
    buses: HashMap<String, BusSlot>,
    /// The simulated rail behind each simulated sensor.
    pub rails: HashMap<String, Arc<Rail>>,
}

impl Rig {
    pub fn new(rt: &Runtime) -> Rig {
        let buses = rt
            .lab
            .buses
            .iter()
            .map(|b| {
                let slot = match &b.kind {
                    BusKind::Simulated => BusSlot::Sim(SimBus::new(&b.name, b.frequency_hz)),
                    BusKind::Device(path) => match LinuxBus::open(path) {
                        Ok(l) => BusSlot::Linux(l),
                        Err(e) => BusSlot::Failed(e),
                    },
                };
                (b.name.clone(), slot)
            })
            .collect();
        Rig {
            buses,
            rails: HashMap::new(),
        }
    }

    /// Opens a sensor through its plugin (putting its simulated chip on the bus first when the
    /// bus is simulated). Errors are the reason the sensor is unusable.
    pub fn open_sensor(
        &mut self,
        rt: &Runtime,
        s: &Sensor,
        rate_hz: f64,
    ) -> Result<PowerSensorBox, String> {
        self.open_chip(rt, std::slice::from_ref(s), rate_hz)
    }

    /// Opens one chip with every channel of it the lab configures (`sensors`, one per channel,
    /// all at one bus and address): one device on the bus, one rail per channel when simulated.
    pub fn open_chip(
        &mut self,
        rt: &Runtime,
        sensors: &[Sensor],
        rate_hz: f64,
    ) -> Result<PowerSensorBox, String> {
        let first = sensors.first().ok_or("a chip without channels")?;
        for s in sensors {
            if let Some(f) = rt.sensor_faults.get(&s.name) {
                return Err(f.clone());
            }
        }
        let (_, api) = rt
            .plugins
            .sensor_plugin(&first.chip)
            .ok_or_else(|| rt.plugins.why_missing(&format!("chip {:?}", first.chip)))?;
        let cfgs: Vec<_> = sensors.iter().map(|s| sensor_config(s, rate_hz)).collect();
        let cfgs = abi_stable::std_types::RSlice::from_slice(&cfgs);
        let handle = match self.buses.get(&first.bus) {
            Some(BusSlot::Sim(bus)) => {
                let rails: Vec<Arc<Rail>> = sensors.iter().map(|s| self.rail_for(rt, s)).collect();
                let dev = (api.simulate())(cfgs, rails.iter().map(|r| r.boxed()).collect())
                    .into_result()
                    .map_err(|e| format!("simulated {}: {}", first.chip, e.message))?;
                bus.attach(first.address, dev);
                for (s, r) in sensors.iter().zip(rails) {
                    self.rails.insert(s.name.clone(), r);
                }
                bus.handle()
            }
            Some(BusSlot::Linux(l)) => l.handle(),
            Some(BusSlot::Failed(e)) => return Err(e.clone()),
            None => return Err(format!("bus {:?} is not defined", first.bus)),
        };
        (api.open())(handle, cfgs)
            .into_result()
            .map_err(|e| e.message.to_string())
    }

    /// The simulated rail of a sensor's board: its profile's idle current at its supply voltage
    /// while the relay is on, nothing while it is off.
    fn rail_for(&self, rt: &Runtime, s: &Sensor) -> Arc<Rail> {
        let state = relay::read_state(&rt.lab);
        let Some(board) = rt.lab.board_of_sensor(&s.name) else {
            return Rail::new(5.0, 0.0);
        };
        let (volts, idle_a) = rt
            .plugins
            .profile(&board.platform, &board.profile)
            .map(|p| (p.supply_mv / 1000.0, p.idle_ma / 1000.0))
            .unwrap_or((5.0, 0.0));
        let on = relay::board_is_on(&state, board);
        Rail::new(volts, if on { idle_a } else { 0.0 })
    }
}
