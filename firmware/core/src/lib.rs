//! The portable core of the profiling firmware, shared by every port and by the host: the serial
//! wire protocol ([`proto`]), the model file format ([`model`]), group-wise quantization
//! ([`quant`]), the transformer ([`infer`]), the firmware main loop ([`fw`]) and stack painting
//! ([`stack`]). `no_std` and
//! allocation-free, so it builds for bare-metal targets; the `std` feature adds host-side model
//! generation ([`gen`]).

#![no_std]

pub mod board;
pub mod crc;
pub mod fw;
#[cfg(feature = "std")]
pub mod gen;
pub mod infer;
#[cfg(target_os = "none")]
pub mod linked;
pub mod math;
pub mod model;
pub mod proto;
pub mod quant;
pub mod stack;

#[cfg(test)]
extern crate std;
