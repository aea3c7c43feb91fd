//! The two kinds of failure the binary maps to exit codes: bad input (exit 2) and a verb that ran
//! but failed or was interrupted (exit 1). Every layer may return them; they know nothing else.

/// An error caused by bad input (lab file, arguments, a model file): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The verb ran but what it did failed or was interrupted: exit code 1, message already shown.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);
