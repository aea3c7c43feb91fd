//! Model files on the host: `labctl model gen|import|inspect|fit|presets|validate`, resolving a
//! run's `--model` (a file, or a preset generated once into a cache beside the database), and
//! quantization accuracy under teacher forcing. Importing other
//! formats lives in the submodules: readers ([`gguf`], [`llama2c`]) build a [`source::Source`],
//! [`import`] writes it as a labctl model, [`card`] keeps its provenance and [`tokenizer`].

pub mod card;
pub mod from_file;
pub mod gguf;
pub mod import;
pub mod llama2c;
pub mod source;
pub mod tokenizer;

use clap::Subcommand;

use std::path::{Path, PathBuf};

use anyhow::Context;
use fwcore::{
    gen::{self, Agreement, Preset, PRESETS},
    infer::sizes,
    model::{seed_of, Config, Model},
    quant::Quant,
};
use labctl_plugin_api::profile::Profile;
use serde_json::json;

use crate::{error::BadInput, error::Failed, plugins::Plugins};

#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// Generate a deterministic model file from a preset.
    Gen {
        #[arg(long)]
        preset: String,
        /// q8_0, q4_0, q3, q2 or f32.
        #[arg(long, default_value = "q8_0")]
        quant: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Seed of the weights (recorded in the file; 0 is reserved).
        #[arg(long, default_value_t = crate::model::DEFAULT_SEED)]
        seed: u32,
    },
    /// Import a GGUF file (llama architecture) or a llama2.c checkpoint as a labctl model file,
    /// with its tokenizer and provenance in a model card beside it (OUT.json).
    Import {
        file: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Store as this quantization. Default: the source's own (Q8_0 and Q4_0 are repacked
        /// without requantizing), f32 for float models.
        #[arg(long)]
        quant: Option<String>,
        /// The tokenizer: llama2.c's tokenizer.bin, or a GGUF whose vocabulary to use. Default:
        /// a GGUF's own; for a llama2.c checkpoint, tokenizer.bin beside it if there is one.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Keep at most this many tokens of context (a smaller RoPE table in flash).
        #[arg(long)]
        ctx: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Token ids of a text under a model's tokenizer (its card's), each id's piece, and the
    /// ids decoded back to text.
    Tokenize {
        file: PathBuf,
        text: String,
        /// Leave out the BOS token the tokenizer adds by default.
        #[arg(long)]
        no_bos: bool,
        #[arg(long)]
        json: bool,
    },
    /// Architecture, parameters, bytes per tensor and quantization of a model file.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Does a model fit a board profile: weights in flash, KV cache + activations + firmware in RAM.
    Fit {
        file: PathBuf,
        /// Board profile, e.g. esp32s3, stm32f7, rp2040.
        #[arg(long)]
        profile: String,
        /// Platform plugin serving the profile.
        #[arg(long, default_value = "virtual")]
        platform: String,
        /// Context length in tokens (default: the model's full context).
        #[arg(long)]
        ctx: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// List the presets `gen` knows.
    Presets {
        #[arg(long)]
        json: bool,
    },
    /// Top-1 agreement and KL of every quantization of a model against its f32 reference (a
    /// generated model's master weights, or an imported model's source file).
    Validate {
        file: PathBuf,
        /// The source an imported model came from (default: the file its card names, beside it).
        #[arg(long)]
        source: Option<PathBuf>,
        #[arg(long, default_value = "Once upon a time, a little robot")]
        prompt: String,
        /// Tokens the f32 reference generates after the prompt (the teacher-forced sequence).
        #[arg(long, default_value_t = crate::model::VALIDATE_TOKENS)]
        tokens: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Seed of generated weights unless `--seed` says otherwise (never 0: 0 means "not generated").
pub const DEFAULT_SEED: u32 = 1;
/// The model `labctl run` uses without `--model`.
pub const DEFAULT_MODEL: &str = "stories260k:q8_0";
/// Tokens the f32 reference generates for validation: long enough that the agreement is a rate,
/// not the luck of a few near-tied positions.
pub const VALIDATE_TOKENS: usize = 256;
/// RAM the firmware needs besides the model's buffers: stack, protocol buffers, the prompt buffer.
pub const FIRMWARE_RAM_BYTES: u64 = 24 * 1024;
/// Flash the firmware's code and constants take besides the model.
pub const FIRMWARE_FLASH_BYTES: u64 = 96 * 1024;

/// A model file read into memory and checked.
/// SHA-256 of `bytes`, 64 lower-case hex digits (what `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct ModelFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub cfg: Config,
    pub seed: u32,
}

impl ModelFile {
    /// Reads and checks a model file; any problem is bad input naming the file.
    pub fn load(path: &Path) -> anyhow::Result<ModelFile> {
        // Regular files only, read no further than their size: a job naming /dev/zero is
        // refused, not read until memory runs out.
        let bytes = from_file::read_input(path, "model file")?;
        let cfg = Model::from_bytes(&bytes)
            .map_err(|e| BadInput(format!("model file {}: {e}", path.display())))?
            .cfg;
        Ok(ModelFile {
            path: path.to_path_buf(),
            seed: seed_of(&bytes),
            bytes,
            cfg,
        })
    }

    /// The model card beside the file, checked against these bytes (`None`: not imported).
    pub fn card(&self) -> Result<Option<card::Card>, BadInput> {
        card::Card::load_for(&self.path, &sha256_hex(&self.bytes)).map_err(BadInput)
    }

    /// The name runs are stored under: the file's stem.
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

pub fn parse_quant(s: &str) -> Result<Quant, BadInput> {
    Quant::from_name(s).ok_or_else(|| {
        BadInput(format!(
            "unknown quantization {s:?} (one of: {})",
            Quant::ALL.map(|q| q.name()).join(", ")
        ))
    })
}

fn preset(name: &str) -> Result<&'static Preset, BadInput> {
    Preset::by_name(name).ok_or_else(|| {
        BadInput(format!(
            "unknown preset {name:?} (one of: {})",
            PRESETS
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Writes `bytes` to `path` atomically (a partly written model is never left behind).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// A run's `--model`: an existing file, or `PRESET[:QUANT]` generated once into `cache` and
/// reused (QUANT defaults to q8_0).
/// Where generated preset models are kept: the lab's models directory (`[storage] models`,
/// default `models/` beside the database).
pub fn cache_dir(lab: &lab_config::Lab) -> PathBuf {
    lab.models_dir.clone()
}

/// The file a `--model` names, without generating a preset that is not there yet (dry runs).
pub fn path_of(spec: &str, cache: &Path) -> anyhow::Result<PathBuf> {
    let p = Path::new(spec);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let (name, quant) = spec.split_once(':').unwrap_or((spec, "q8_0"));
    if spec.contains('/') || Preset::by_name(name).is_none() {
        return resolve(spec, cache);
    }
    Ok(cache
        .join(format!("gen{}", gen::GENERATOR_VERSION))
        .join(format!("{name}-{}.ltlm", parse_quant(quant)?.name())))
}

pub fn resolve(spec: &str, cache: &Path) -> anyhow::Result<PathBuf> {
    let p = Path::new(spec);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let (name, quant) = spec.split_once(':').unwrap_or((spec, "q8_0"));
    if spec.contains('/') || Preset::by_name(name).is_none() {
        return Err(BadInput(format!(
            "--model {spec}: no such file, and not a preset (PRESET[:QUANT], presets: {})",
            PRESETS
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    let quant = parse_quant(quant)?;
    let path = cache
        .join(format!("gen{}", gen::GENERATOR_VERSION))
        .join(format!("{name}-{}.ltlm", quant.name()));
    if !path.exists() {
        let bytes = gen::generate(&preset(name)?.config(quant), DEFAULT_SEED);
        write_atomic(&path, &bytes)?;
        tracing::info!(path = %path.display(), "generated model");
    }
    Ok(path)
}

pub use tokenizer::byte_encode as encode;

/// Whether a model fits a board profile's memory at a context length.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fit {
    pub profile: String,
    pub ctx_tokens: usize,
    pub model_bytes: u64,
    pub flash_needed: u64,
    pub flash_bytes: u64,
    pub kv_cache_bytes: u64,
    pub activation_bytes: u64,
    pub ram_needed: u64,
    pub ram_bytes: u64,
    pub fits_flash: bool,
    pub fits_ram: bool,
    /// Free share of flash / RAM (negative when it does not fit).
    pub flash_margin: f64,
    pub ram_margin: f64,
}

impl Fit {
    pub fn fits(&self) -> bool {
        self.fits_flash && self.fits_ram
    }

    /// One line saying why not, for a run's error.
    pub fn why_not(&self) -> String {
        let mut v = vec![];
        if !self.fits_flash {
            v.push(format!(
                "flash: needs {} KiB, has {} KiB",
                self.flash_needed / 1024,
                self.flash_bytes / 1024
            ));
        }
        if !self.fits_ram {
            v.push(format!(
                "RAM: needs {} KiB at {} tokens of context, has {} KiB",
                self.ram_needed / 1024,
                self.ctx_tokens,
                self.ram_bytes / 1024
            ));
        }
        v.join("; ")
    }
}

/// Flash: model + firmware. RAM: KV cache + activations (the firmware's static arena) + the
/// firmware's own RAM; on boards with PSRAM, PSRAM counts as RAM (where KV caches live there).
pub fn fit(cfg: &Config, model_bytes: u64, p: &Profile, ctx: usize) -> Fit {
    let s = sizes(cfg, ctx);
    let kv = (2 * cfg.n_layers as usize * ctx * cfg.kv_dim() * 4) as u64;
    let arena = s.bytes() as u64;
    let flash_needed = model_bytes + FIRMWARE_FLASH_BYTES;
    let ram_needed = arena + FIRMWARE_RAM_BYTES;
    let ram = p.sram_bytes() + p.psram_bytes();
    let margin = |need: u64, have: u64| {
        if have == 0 {
            -1.0
        } else {
            1.0 - need as f64 / have as f64
        }
    };
    Fit {
        profile: p.name.to_string(),
        ctx_tokens: ctx,
        model_bytes,
        flash_needed,
        flash_bytes: p.flash_bytes(),
        kv_cache_bytes: kv,
        activation_bytes: arena - kv,
        ram_needed,
        ram_bytes: ram,
        fits_flash: flash_needed <= p.flash_bytes(),
        fits_ram: ram_needed <= ram,
        flash_margin: margin(flash_needed, p.flash_bytes()),
        ram_margin: margin(ram_needed, ram),
    }
}

/// Top-1 agreement and KL of every quantization of a generated model against its f32 reference
/// under teacher forcing: the f32 model generates `gen` tokens after `prompt`, and every model is
/// fed that same sequence.
pub fn validate(cfg: &Config, seed: u32, prompt: &[u32], gen: usize) -> Vec<(Quant, Agreement)> {
    let reference_bytes = gen::generate(
        &Config {
            quant: Quant::F32,
            ..*cfg
        },
        seed,
    );
    let make = |q: Quant| Some(gen::generate(&Config { quant: q, ..*cfg }, seed));
    validate_with(&reference_bytes, make, prompt, gen)
}

/// Teacher-forced agreement of the models `make` builds (one per quantization) with the f32
/// `reference_bytes`.
pub fn validate_with(
    reference_bytes: &[u8],
    make: impl Fn(Quant) -> Option<Vec<u8>>,
    prompt: &[u32],
    gen: usize,
) -> Vec<(Quant, Agreement)> {
    let Ok(reference) = Model::from_bytes(reference_bytes) else {
        return vec![];
    };
    let cfg = &reference.cfg;
    let ctx = (prompt.len() + gen).min(cfg.seq_len as usize);
    let seq = match gen::greedy(&reference, prompt, ctx.saturating_sub(prompt.len())) {
        Ok(s) => s,
        Err(_) => return vec![],
    };
    let Ok(ref_d) = gen::distributions(&reference, &seq[..seq.len() - 1]) else {
        return vec![];
    };
    [Quant::Q8_0, Quant::Q4_0, Quant::Q3, Quant::Q2]
        .into_iter()
        .filter_map(|q| {
            let bytes = make(q)?;
            let m = Model::from_bytes(&bytes).ok()?;
            let d = gen::distributions(&m, &seq[..seq.len() - 1]).ok()?;
            Some((q, gen::agreement(&ref_d, &d)))
        })
        .collect()
}

fn human(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// Rows of `model inspect`: (tensor, shape, bytes, storage).
fn tensors(cfg: &Config) -> Vec<(String, String, u64, &'static str)> {
    let (d, h, kv, v) = (
        cfg.dim as usize,
        cfg.hidden_dim as usize,
        cfg.kv_dim(),
        cfg.vocab_size as usize,
    );
    let l = cfg.n_layers as usize;
    let q = cfg.quant.name();
    let mb = |r, c| cfg.matrix_bytes(r, c) as u64;
    let mut t = vec![
        (
            "rope_table".to_string(),
            format!("{} x {}", cfg.seq_len, cfg.head_dim()),
            (cfg.seq_len as usize * cfg.head_dim() / 2 * 8) as u64,
            "f32",
        ),
        ("token_embedding".into(), format!("{v} x {d}"), mb(v, d), q),
    ];
    let per = |name: &str, shape: String, bytes: u64, kind| {
        (
            format!("{name} (x{l} layers)"),
            shape,
            bytes * l as u64,
            kind,
        )
    };
    t.push(per("rms_att", format!("{d}"), 4 * d as u64, "f32"));
    t.push(per("wq", format!("{d} x {d}"), mb(d, d), q));
    t.push(per("wk", format!("{kv} x {d}"), mb(kv, d), q));
    t.push(per("wv", format!("{kv} x {d}"), mb(kv, d), q));
    t.push(per("wo", format!("{d} x {d}"), mb(d, d), q));
    t.push(per("rms_ffn", format!("{d}"), 4 * d as u64, "f32"));
    t.push(per("w1", format!("{h} x {d}"), mb(h, d), q));
    t.push(per("w2", format!("{d} x {h}"), mb(d, h), q));
    t.push(per("w3", format!("{h} x {d}"), mb(h, d), q));
    t.push(("rms_final".into(), format!("{d}"), 4 * d as u64, "f32"));
    if !cfg.shared_classifier {
        t.push(("classifier".into(), format!("{v} x {d}"), mb(v, d), q));
    }
    t
}

fn config_json(cfg: &Config) -> serde_json::Value {
    json!({
        "dim": cfg.dim, "hidden_dim": cfg.hidden_dim, "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "vocab_size": cfg.vocab_size,
        "seq_len": cfg.seq_len, "quant": cfg.quant.name(),
        "shared_classifier": cfg.shared_classifier, "parameters": cfg.parameters(),
    })
}

/// The profile and how to name it (`platform/profile`).
fn find_profile(
    plugins: &Plugins,
    platform: &str,
    profile: &str,
) -> anyhow::Result<(String, Profile)> {
    // A bare name that is not the platform's own but is exactly one other platform's profile
    // (`--profile pico`) is that one: a budget needs the board's memories, not who runs it.
    let owners: Vec<&str> = plugins
        .loaded
        .iter()
        .filter(|p| p.profiles.iter().any(|pr| pr.name == profile))
        .map(|p| p.name.as_str())
        .collect();
    let found = match plugins.profile(platform, profile) {
        Some(p) if profile.contains('/') => Some((profile.to_string(), p)),
        Some(p) => Some((format!("{platform}/{profile}"), p)),
        None => match owners[..] {
            [owner] if !profile.contains('/') => plugins
                .profile(owner, profile)
                .map(|p| (format!("{owner}/{profile}"), p)),
            _ => None,
        },
    };
    found.ok_or_else(|| {
        let known: Vec<String> = plugins
            .loaded
            .iter()
            .flat_map(|p| {
                p.profiles
                    .iter()
                    .map(move |pr| format!("{}/{}", p.name, pr.name))
            })
            .collect();
        BadInput(format!(
            "no profile {profile:?} on platform {platform:?} (known: {})",
            known.join(", ")
        ))
        .into()
    })
}

/// `labctl model …`
pub fn cmd_model(cmd: ModelCmd, lab: Option<&lab_config::Lab>) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Presets { json } => {
            let rows: Vec<serde_json::Value> = PRESETS
                .iter()
                .map(|p| {
                    let c = p.config(Quant::Q4_0);
                    json!({"name": p.name, "description": p.description,
                           "parameters": c.parameters(),
                           "bytes": Quant::ALL.iter().map(|&q| (q.name(), p.config(q).layout().total)).collect::<std::collections::BTreeMap<_,_>>()})
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for p in PRESETS {
                    let c = p.config(Quant::Q8_0);
                    println!(
                        "{:<12} {:>6.2}M params  q8_0 {:>10}  q4_0 {:>10}  {}",
                        p.name,
                        c.parameters() as f64 / 1e6,
                        human(c.layout().total as u64),
                        human(p.config(Quant::Q4_0).layout().total as u64),
                        p.description
                    );
                }
            }
            Ok(())
        }
        ModelCmd::Gen {
            preset: name,
            quant,
            output,
            seed,
        } => {
            let q = parse_quant(&quant)?;
            let p = preset(&name)?;
            if seed == 0 {
                return Err(
                    BadInput("--seed 0 is reserved (it means 'not generated')".into()).into(),
                );
            }
            let cfg = p.config(q);
            let bytes = gen::generate(&cfg, seed);
            write_atomic(&output, &bytes)?;
            println!(
                "{}: {} {} ({:.2}M parameters, {})",
                output.display(),
                p.name,
                q.name(),
                cfg.parameters() as f64 / 1e6,
                human(bytes.len() as u64)
            );
            Ok(())
        }
        ModelCmd::Import {
            file,
            output,
            quant,
            tokenizer,
            ctx,
            json,
        } => {
            let q = quant.as_deref().map(parse_quant).transpose()?;
            let r = from_file::import_file(&file, &output, q, tokenizer.as_deref(), ctx)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                from_file::print_report(&r);
            }
            Ok(())
        }
        ModelCmd::Tokenize {
            file,
            text,
            no_bos,
            json,
        } => {
            let m = ModelFile::load(&file)?;
            let card = m.card()?;
            let (ids, pieces, decoded) = match card.and_then(|c| c.tokenizer) {
                Some(v) => {
                    let bos = v.add_bos && !no_bos;
                    let t = tokenizer::Spm::new(v);
                    let ids = t.encode(&text, bos);
                    let pieces: Vec<String> = ids.iter().map(|&i| t.vocab.piece(i)).collect();
                    let decoded = t.decode(&ids);
                    (ids, pieces, decoded)
                }
                None => {
                    let ids = encode(&text, m.cfg.vocab_size)?;
                    let pieces = ids.iter().map(|&i| format!("<0x{i:02X}>")).collect();
                    (ids, pieces, text.clone())
                }
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"ids": ids, "pieces": pieces, "decoded": decoded})
                    )?
                );
            } else {
                for (i, p) in ids.iter().zip(&pieces) {
                    println!("{i:>7}  {p:?}");
                }
                println!("decoded: {decoded:?}");
            }
            Ok(())
        }
        ModelCmd::Inspect { file, json } => {
            let m = ModelFile::load(&file)?;
            let t = tensors(&m.cfg);
            let card = m.card()?;
            if json {
                let v = json!({
                    "file": file, "bytes": m.bytes.len(), "seed": m.seed,
                    "source": card.as_ref().map(|c| &c.source),
                    "tokenizer": card.as_ref().map(|c| c.tokenizer_label()),
                    "tokenizer_file": card.as_ref().and_then(|c| c.tokenizer_file.as_ref()),
                    "conversions": card.as_ref().map(|c| &c.conversions),
                    "rope": card.as_ref().map(|c| json!({"base": c.rope_base, "dims": c.rope_dim})),
                    "config": config_json(&m.cfg),
                    "tensors": t.iter().map(|(n, s, b, k)| json!({"name": n, "shape": s, "bytes": b, "storage": k})).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let c = &m.cfg;
                println!("{}", file.display());
                println!(
                    "  llama-style transformer: dim {} hidden {} layers {} heads {} kv_heads {} vocab {} context {}{}",
                    c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
                    if c.shared_classifier { ", classifier shares the embedding" } else { "" }
                );
                println!(
                    "  {} parameters, quantization {} (groups of 32), {} on disk{}",
                    c.parameters(),
                    c.quant.name(),
                    human(m.bytes.len() as u64),
                    if m.seed != 0 {
                        format!(", generated with seed {}", m.seed)
                    } else {
                        String::new()
                    }
                );
                if let Some(c) = &card {
                    println!(
                        "  imported from {} ({}{}, SHA-256 {}), RoPE base {} over {} dims",
                        c.source.file,
                        c.source.format,
                        c.source
                            .name
                            .as_ref()
                            .map(|n| format!(" \"{n}\""))
                            .unwrap_or_default(),
                        c.source.sha256,
                        c.rope_base,
                        c.rope_dim
                    );
                    for r in &c.conversions {
                        println!(
                            "  {:>4} tensors {} -> {} ({})",
                            r.tensors, r.from, r.to, r.how
                        );
                    }
                    println!(
                        "  tokenizer: {}{}",
                        c.tokenizer_label(),
                        c.tokenizer_file
                            .as_ref()
                            .map(|p| format!(" from {}", p.file))
                            .unwrap_or_default()
                    );
                }
                for (n, s, b, k) in &t {
                    println!("  {n:<24} {s:>12}  {:>11}  {k}", human(*b));
                }
            }
            Ok(())
        }
        ModelCmd::Fit {
            file,
            profile,
            platform,
            ctx,
            json,
        } => {
            let m = ModelFile::load(&file)?;
            let plugins = Plugins::load(lab.and_then(|l| l.plugin_dirs.as_deref()));
            let (label, p) = find_profile(&plugins, &platform, &profile)?;
            let ctx = ctx
                .unwrap_or(m.cfg.seq_len as usize)
                .clamp(1, m.cfg.seq_len as usize);
            let f = fit(&m.cfg, m.bytes.len() as u64, &p, ctx);
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                let yes = |b| if b { "fits" } else { "DOES NOT FIT" };
                println!("{} on {label} at {ctx} tokens of context:", file.display());
                println!(
                    "  flash: {} model + {} firmware = {} of {}: {} ({:+.0}% margin)",
                    human(f.model_bytes),
                    human(FIRMWARE_FLASH_BYTES),
                    human(f.flash_needed),
                    human(f.flash_bytes),
                    yes(f.fits_flash),
                    f.flash_margin * 100.0
                );
                println!(
                    "  RAM:   {} KV cache + {} activations + {} firmware = {} of {}{}: {} ({:+.0}% margin)",
                    human(f.kv_cache_bytes),
                    human(f.activation_bytes),
                    human(FIRMWARE_RAM_BYTES),
                    human(f.ram_needed),
                    human(f.ram_bytes),
                    if p.psram_bytes() > 0 { " (SRAM + PSRAM)" } else { "" },
                    yes(f.fits_ram),
                    f.ram_margin * 100.0
                );
            }
            if f.fits() {
                Ok(())
            } else {
                Err(Failed(format!("does not fit: {}", f.why_not())).into())
            }
        }
        ModelCmd::Validate {
            file,
            source,
            prompt,
            tokens,
            json,
        } => {
            let m = ModelFile::load(&file)?;
            let card = m.card()?;
            if let Some(c) = &card {
                let ids = match &c.tokenizer {
                    Some(v) => tokenizer::Spm::new(v.clone()).encode(&prompt, v.add_bos),
                    None => vec![0],
                };
                let rows = from_file::validate_imported(&m, c, source.as_deref(), &ids, tokens)?;
                print_validation(&rows, json)?;
                return Ok(());
            }
            if m.seed == 0 {
                return Err(BadInput(format!(
                    "{}: not generated by labctl (no seed), so there is no f32 reference to compare with",
                    file.display()
                ))
                .into());
            }
            let ids = encode(&prompt, m.cfg.vocab_size)?;
            let rows = validate(&m.cfg, m.seed, &ids, tokens);
            print_validation(&rows, json)?;
            Ok(())
        }
    }
}

pub fn print_validation(rows: &[(Quant, Agreement)], json: bool) -> anyhow::Result<()> {
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(q, a)| json!({"quant": q.name(), "reference": "f32", "positions": a.positions, "top1_agreement": a.top1, "mean_kl": a.mean_kl}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("quantization accuracy vs f32 (teacher forcing):");
        println!("  quant   positions  top-1 agreement  mean KL (nats)");
        for (q, a) in rows {
            println!(
                "  {:<6} {:>10}  {:>14.1}%  {:>14.5}",
                q.name(),
                a.positions,
                a.top1 * 100.0,
                a.mean_kl
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_round_trips_text() {
        let ids = encode("héllo", 512).unwrap();
        assert_eq!(ids.len(), 6);
        let bytes: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
        assert_eq!(String::from_utf8(bytes).unwrap(), "héllo");
        assert!(encode("x", 128).is_err());
    }

    #[test]
    fn q8_0_tracks_f32_on_the_default_preset() {
        let p = Preset::by_name("stories260k").unwrap();
        let ids = encode("Once upon a time", 512).unwrap();
        let rows = validate(&p.config(Quant::Q8_0), DEFAULT_SEED, &ids, VALIDATE_TOKENS);
        let q8 = rows.iter().find(|(q, _)| *q == Quant::Q8_0).unwrap().1;
        assert!(q8.positions >= 256, "{q8:?}");
        assert!(q8.top1 >= 0.95, "q8_0 top-1 agreement {:.3}", q8.top1);
        for (q, a) in &rows {
            println!(
                "{}: top-1 {:.1}% KL {:.4}",
                q.name(),
                a.top1 * 100.0,
                a.mean_kl
            );
        }
    }
}
