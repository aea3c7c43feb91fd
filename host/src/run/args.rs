//! The arguments of a profiling job, as `labctl run` takes them and jobs from the network mirror
//! them (docs/mqtt.md). Defaults and help live here, beside the job that uses them.

use clap::Args;

use crate::units::parse_duration;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Only these boards (comma-separated or repeated); default every board in the lab.
    #[arg(long = "boards", value_delimiter = ',')]
    pub boards: Vec<String>,
    /// Model file(s), or PRESET[:QUANT] generated once beside the database (repeatable;
    /// default stories260k:q8_0). Every board runs every model.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Prompt text: tokenized by the model's own tokenizer (imported models), byte-level for
    /// generated presets (see docs/running.md).
    #[arg(long, default_value = "Once upon a time, a little robot")]
    pub prompt: String,
    /// Exact prompt token ids, comma-separated (e.g. 1,300,301), instead of tokenizing --prompt:
    /// to reproduce a run against another implementation.
    #[arg(long = "prompt-ids", value_delimiter = ',')]
    pub prompt_ids: Vec<u32>,
    /// End a run when the model produces its end-of-sequence token (models with a tokenizer).
    #[arg(long)]
    pub stop_at_eos: bool,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 32)]
    pub tokens: u32,
    /// Measured runs per board and model.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Unrecorded warm-up runs before the measured ones.
    #[arg(long, default_value_t = 0)]
    pub warmup: u32,
    /// Also measure quantization accuracy (top-1 agreement, KL) of every quantization of the
    /// run's models against their f32 reference, stored in quant_accuracy.
    #[arg(long)]
    pub validate: bool,
    /// How long a board may take to boot and answer the handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub boot_timeout: std::time::Duration,
    /// Longest silence from a board during a run before it is failed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub token_timeout: std::time::Duration,
    /// Print the summary as JSON (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Print what bring-up would do on each board, one line per step (`board<TAB>step<TAB>argv`:
    /// power, flash/start, reset, console) with the exact command lines, and do none of it.
    #[arg(long)]
    pub dry_run: bool,
}
