//! Verbs, one file each, where a verb is more than a call into a job: `boards`, `config check`,
//! `discover`, `flash`, `reset`, `console` and `power`.

pub mod boards;
pub mod config_check;
pub mod console;
pub mod discover;
pub mod flash;
pub mod power;
pub mod reset;
pub mod verify;
