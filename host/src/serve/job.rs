//! What a job from the network may ask, checked before anything is opened. A job is a request
//! from whoever can publish on the lab's prefix, not a trusted flag: the payload is at most
//! 64 KiB, every string at most 256 bytes and every array at most 64 entries (control requests
//! too, [`check_shape`]); tokens, repeats and warm-ups are bounded; and a model is a preset
//! (`PRESET[:QUANT]`) or a plain file name in the lab's models directory (`[storage] models`),
//! no larger than the largest flash of any board profile. Nothing outside that directory is
//! opened, and a refusal says nothing about files elsewhere.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::run::RunArgs;

/// The fields mirror `labctl run`'s flags (docs/mqtt.md has the schema).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    #[serde(default)]
    boards: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    prompt: Option<String>,
    #[serde(default)]
    prompt_ids: Vec<u32>,
    #[serde(default)]
    stop_at_eos: bool,
    tokens: Option<u32>,
    repeat: Option<u32>,
    warmup: Option<u32>,
    #[serde(default)]
    validate: bool,
}

pub const MAX_PAYLOAD: usize = 64 << 10;
pub const MAX_STRING: usize = 256;
pub const MAX_ARRAY: usize = 64;
/// Nesting a request never needs (a job is one object of scalars and flat arrays).
const MAX_DEPTH: usize = 4;
const MAX_TOKENS: u32 = 4096;
const MAX_REPEAT: u32 = 1000;
const MAX_WARMUP: u32 = 100;

/// Where a job's models may come from.
pub struct Limits {
    /// The lab's models directory.
    pub models_dir: PathBuf,
    /// The largest flash of any loaded board profile: no board holds a larger model.
    pub max_model_bytes: u64,
}

/// The payload as JSON within the size, string, array and depth limits.
pub fn check_shape(payload: &[u8]) -> Result<Value, String> {
    if payload.is_empty() {
        return Err("empty payload: a request is a JSON object (see docs/mqtt.md)".into());
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "payload is {} bytes; at most {MAX_PAYLOAD}",
            payload.len()
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8 text".to_string())?;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    fn walk(v: &Value, depth: usize, at: &str) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{at}: nested deeper than a request needs"));
        }
        match v {
            Value::String(s) if s.len() > MAX_STRING => Err(format!(
                "{at}: a string of {} bytes; at most {MAX_STRING}",
                s.len()
            )),
            Value::Array(a) if a.len() > MAX_ARRAY => {
                Err(format!("{at}: {} entries; at most {MAX_ARRAY}", a.len()))
            }
            Value::Array(a) => a.iter().try_for_each(|x| walk(x, depth + 1, at)),
            Value::Object(o) if o.len() > MAX_ARRAY => {
                Err(format!("{at}: {} fields; at most {MAX_ARRAY}", o.len()))
            }
            Value::Object(o) => o.iter().try_for_each(|(k, x)| {
                if k.len() > MAX_STRING {
                    return Err(format!("a field name of {} bytes", k.len()));
                }
                walk(x, depth + 1, k)
            }),
            _ => Ok(()),
        }
    }
    walk(&v, 0, "request")?;
    Ok(v)
}

/// A job's model: a preset spec as it is, or the file it names in the models directory.
fn model(name: &str, limits: &Limits) -> Result<String, String> {
    let (preset, quant) = name.split_once(':').unwrap_or((name, "q8_0"));
    if fwcore::gen::Preset::by_name(preset).is_some() {
        crate::model::parse_quant(quant).map_err(|e| format!("model {name:?}: {e}"))?;
        return Ok(name.to_string());
    }
    let refuse = || {
        format!(
            "model {name:?}: a job names a preset ({}) or a model file in the lab's models directory, by its file name",
            fwcore::gen::PRESETS
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.contains("..")
        || name.contains(':')
    {
        return Err(refuse());
    }
    // Whatever the name points at (a link, say) must itself lie in the directory.
    let not_there = || format!("model {name:?}: no such model file in the lab's models directory");
    let dir = std::fs::canonicalize(&limits.models_dir).map_err(|_| not_there())?;
    let file = std::fs::canonicalize(dir.join(name)).map_err(|_| not_there())?;
    if !file.starts_with(&dir) {
        return Err(not_there());
    }
    let meta = std::fs::metadata(&file).map_err(|_| not_there())?;
    if !meta.is_file() {
        return Err(format!("model {name:?}: not a regular file"));
    }
    if meta.len() > limits.max_model_bytes {
        return Err(format!(
            "model {name:?} is {} bytes, more than any board's flash ({} bytes)",
            meta.len(),
            limits.max_model_bytes
        ));
    }
    Ok(file.display().to_string())
}

/// Turns a payload into `labctl run` arguments, or says what is wrong with it.
pub fn parse(payload: &[u8], limits: &Limits) -> Result<RunArgs, String> {
    let v = check_shape(payload)?;
    let job: Job = serde_json::from_value(v).map_err(|e| format!("not a valid job: {e}"))?;
    let defaults = <RunArgs as clap::FromArgMatches>::from_arg_matches(
        &<RunArgs as clap::Args>::augment_args(clap::Command::new("job")).get_matches_from(["job"]),
    )
    .map_err(|e| e.to_string())?;
    let tokens = job.tokens.unwrap_or(defaults.tokens);
    let repeat = job.repeat.unwrap_or(defaults.repeat);
    let warmup = job.warmup.unwrap_or(defaults.warmup);
    if !(1..=MAX_TOKENS).contains(&tokens) {
        return Err(format!("tokens must be 1..={MAX_TOKENS}, got {tokens}"));
    }
    if !(1..=MAX_REPEAT).contains(&repeat) {
        return Err(format!("repeat must be 1..={MAX_REPEAT}, got {repeat}"));
    }
    if warmup > MAX_WARMUP {
        return Err(format!("warmup must be 0..={MAX_WARMUP}, got {warmup}"));
    }
    let prompt = job.prompt.unwrap_or(defaults.prompt);
    if prompt.is_empty() {
        return Err("prompt must not be empty".into());
    }
    if job.boards.iter().chain(&job.models).any(|s| s.is_empty()) {
        return Err("board and model names must not be empty".into());
    }
    let models = job
        .models
        .iter()
        .map(|m| model(m, limits))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RunArgs {
        boards: job.boards,
        models,
        prompt,
        prompt_ids: job.prompt_ids,
        stop_at_eos: job.stop_at_eos,
        tokens,
        repeat,
        warmup,
        validate: job.validate,
        json: false,
        ..defaults
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn limits(dir: &Path) -> Limits {
        Limits {
            models_dir: dir.to_path_buf(),
            max_model_bytes: 1 << 20,
        }
    }

    #[test]
    fn job_payloads_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let l = limits(dir.path());
        let parse = |p: &[u8]| parse(p, &l);
        let ok = parse(br#"{"boards": ["pico"], "tokens": 8, "repeat": 2}"#).unwrap();
        assert_eq!((ok.tokens, ok.repeat, ok.boards.len()), (8, 2, 1));
        let defaults = parse(b"{}").unwrap();
        assert_eq!(defaults.tokens, 32);
        assert!(defaults.prompt_ids.is_empty() && !defaults.stop_at_eos);
        let ids = parse(br#"{"prompt_ids": [1, 300, 301], "stop_at_eos": true}"#).unwrap();
        assert_eq!((ids.prompt_ids, ids.stop_at_eos), (vec![1, 300, 301], true));
        let many = format!(r#"{{"prompt_ids": [{}]}}"#, vec!["7"; 65].join(","));
        assert!(parse(many.as_bytes()).unwrap_err().contains("at most 64"));
        let long = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(257));
        assert!(parse(long.as_bytes()).unwrap_err().contains("at most 256"));
        let huge = format!(r#"{{"prompt": "a", "pad": "{}"}}"#, " ".repeat(70_000));
        assert!(parse(huge.as_bytes())
            .unwrap_err()
            .contains("at most 65536"));
        let deep = format!("{}1{}", "[".repeat(10), "]".repeat(10));
        assert!(parse(deep.as_bytes()).is_err());
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"not json",
            b"[1,2]",
            br#"{"tokens": 0}"#,
            br#"{"tokens": -3}"#,
            br#"{"repeat": 100000}"#,
            br#"{"warmup": 101}"#,
            br#"{"prompt": ""}"#,
            br#"{"colour": "red"}"#,
            br#"{"boards": "pico"}"#,
            br#"{"boards": [""]}"#,
            br#"{"prompt_ids": [-1]}"#,
            br#"{"prompt_ids": "1,2"}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn models_are_presets_or_files_in_the_models_directory() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        std::fs::write(models.join("mine.ltlm"), b"LTLM").unwrap();
        std::fs::write(models.join("big.ltlm"), vec![0u8; 2 << 20]).unwrap();
        std::fs::write(dir.path().join("outside.ltlm"), b"LTLM").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.ltlm"), models.join("link.ltlm"))
            .unwrap();
        std::os::unix::fs::symlink("/dev/zero", models.join("zero.ltlm")).unwrap();
        let l = limits(&models);
        let job = |m: &str| parse(format!(r#"{{"models": ["{m}"]}}"#).as_bytes(), &l);
        assert_eq!(
            job("stories260k:q4_0").unwrap().models,
            ["stories260k:q4_0"]
        );
        assert_eq!(
            job("mine.ltlm").unwrap().models,
            [std::fs::canonicalize(models.join("mine.ltlm"))
                .unwrap()
                .display()
                .to_string()]
        );
        assert!(job("stories260k:q9").is_err());
        for hostile in [
            "/etc/shadow",
            "../outside.ltlm",
            "..",
            ".hidden",
            "a/b.ltlm",
            "link.ltlm",
            "zero.ltlm",
            "missing.ltlm",
            "/dev/zero",
        ] {
            let e = job(hostile).unwrap_err();
            assert!(
                !e.contains("magic") && !e.contains("shadow:"),
                "{hostile}: {e}"
            );
        }
        // Outside and missing read the same: nothing is said about files elsewhere.
        assert_eq!(
            job("link.ltlm").unwrap_err().replace("link", "X"),
            job("missing.ltlm").unwrap_err().replace("missing", "X")
        );
        assert!(job("big.ltlm")
            .unwrap_err()
            .contains("more than any board's flash"));
    }
}
