//! Verbs for a bench, one file each: `flash`, `reset`, `console` and `power`.

pub mod console;
pub mod flash;
pub mod power;
pub mod reset;
