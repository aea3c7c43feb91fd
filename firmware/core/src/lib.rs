//! The portable core of the profiling firmware, shared by every port and by the host: the serial
//! wire protocol ([`proto`]). `no_std` and allocation-free, so it builds for bare-metal targets.

#![no_std]

pub mod crc;
#[cfg(feature = "std")]
pub mod gen;
pub mod infer;
pub mod math;
pub mod model;
pub mod proto;
pub mod quant;

#[cfg(test)]
extern crate std;
