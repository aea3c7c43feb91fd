//! `labctl model import` end to end: read a source file (bounded, regular files only), tell GGUF
//! from llama2.c, find its tokenizer, import, write the model and its card atomically, and
//! report; and quantization accuracy of an imported model against its own source.

use std::path::{Path, PathBuf};

use fwcore::{gen::Agreement, quant::Quant};

use super::card::{Card, ConversionRow, Provenance, CARD_SCHEMA};
use super::import::{import, Conversion, Imported};
use super::source::Source;
use super::tokenizer::{read_tokenizer_bin, Vocab};
use super::{gguf, llama2c, sha256_hex, write_atomic, ModelFile};
use crate::error::BadInput;

/// Larger source files are refused rather than read (a 7B f16 model is 13.5 GB; nothing that
/// size fits a board).
const MAX_SOURCE_BYTES: u64 = 16 << 30;

/// Reads a whole input file; devices, directories and FIFOs are refused before reading, so
/// `/dev/zero` cannot make labctl allocate without bound.
pub fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, BadInput> {
    let meta =
        std::fs::metadata(path).map_err(|e| BadInput(format!("{what} {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(BadInput(format!(
            "{what} {}: not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(BadInput(format!(
            "{what} {}: {} bytes, more than the {} GiB labctl reads",
            path.display(),
            meta.len(),
            MAX_SOURCE_BYTES >> 30
        )));
    }
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .map_err(|e| BadInput(format!("{what} {}: {e}", path.display())))?;
    let mut b = Vec::with_capacity(meta.len() as usize);
    // `take` bounds the read by the size seen above, even if the file grows meanwhile.
    f.by_ref()
        .take(meta.len())
        .read_to_end(&mut b)
        .map_err(|e| BadInput(format!("{what} {}: {e}", path.display())))?;
    Ok(b)
}

/// The model in `bytes`, whichever supported format it is.
pub fn parse_source(bytes: &[u8]) -> Result<Source<'_>, String> {
    if bytes.starts_with(b"GGUF") {
        let g = gguf::parse(bytes).map_err(|e| format!("GGUF: {e}"))?;
        return g.to_source().map_err(|e| format!("GGUF: {e}"));
    }
    if bytes.starts_with(&fwcore::model::MAGIC) {
        return Err("already a labctl model file: nothing to import".into());
    }
    if llama2c::looks_like(bytes) {
        return llama2c::read(bytes).map_err(|e| format!("llama2.c checkpoint: {e}"));
    }
    Err(format!(
        "neither a GGUF file nor a llama2.c checkpoint (first bytes {:02x?})",
        &bytes[..bytes.len().min(8)]
    ))
}

fn provenance(path: &Path, bytes: &[u8], format: &str, name: Option<String>) -> Provenance {
    Provenance {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        format: format.into(),
        name,
    }
}

/// The vocabulary in a tokenizer file: llama2.c's `tokenizer.bin` or a GGUF's.
fn read_tokenizer(path: &Path, vocab_size: usize) -> anyhow::Result<(Vocab, Provenance)> {
    let b = read_input(path, "tokenizer")?;
    let v = if b.starts_with(b"GGUF") {
        let g = gguf::parse(&b)
            .map_err(|e| BadInput(format!("tokenizer {}: GGUF: {e}", path.display())))?;
        g.vocab()
            .map_err(|e| BadInput(format!("tokenizer {}: {e}", path.display())))?
            .ok_or_else(|| {
                BadInput(format!(
                    "tokenizer {}: the GGUF has no SentencePiece (llama) vocabulary",
                    path.display()
                ))
            })?
    } else {
        read_tokenizer_bin(&b, vocab_size)
            .map_err(|e| BadInput(format!("tokenizer {}: {e}", path.display())))?
    };
    let fmt = if v.source == "gguf" {
        "gguf"
    } else {
        "tokenizer.bin"
    };
    Ok((v, provenance(path, &b, fmt, None)))
}

/// What `model import` did, for the report (and `--json`).
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub output: PathBuf,
    pub card: PathBuf,
    pub source: Provenance,
    pub tokenizer: Option<Provenance>,
    pub tokenizer_pieces: Option<usize>,
    pub quant: String,
    pub bytes: u64,
    pub parameters: u64,
    pub context: u32,
    pub conversions: Vec<Conversion>,
    pub requantized: bool,
    pub notes: Vec<String>,
    pub seconds: f64,
    /// Peak resident memory of this process (getrusage), bytes.
    pub peak_rss_bytes: u64,
}

fn peak_rss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0;
    }
    u.ru_maxrss as u64 * 1024
}

/// Imports `file` into `output` (and its card), as `model import` does.
pub fn import_file(
    file: &Path,
    output: &Path,
    quant: Option<Quant>,
    tokenizer: Option<&Path>,
    ctx: Option<usize>,
) -> anyhow::Result<Report> {
    let start = std::time::Instant::now();
    let bytes = read_input(file, "model")?;
    let src = parse_source(&bytes).map_err(|e| BadInput(format!("{}: {e}", file.display())))?;
    let vocab_size = src.hyper.vocab_size;
    let mut notes = vec![];
    let (vocab, tok_prov) = match tokenizer {
        Some(t) => {
            let (v, p) = read_tokenizer(t, vocab_size)?;
            (Some(v), Some(p))
        }
        None if src.vocab.is_some() => (src.vocab.clone(), None),
        None => {
            let beside = file.with_file_name("tokenizer.bin");
            if src.format.starts_with("llama2c") && beside.is_file() {
                notes.push(format!(
                    "tokenizer: {} (beside the checkpoint)",
                    beside.display()
                ));
                let (v, p) = read_tokenizer(&beside, vocab_size)?;
                (Some(v), Some(p))
            } else {
                notes.push(
                    "no tokenizer: runs take prompts as --prompt-ids and show no text".into(),
                );
                (None, None)
            }
        }
    };
    if let Some(v) = &vocab {
        v.check(vocab_size)
            .map_err(|e| BadInput(format!("tokenizer: {e}")))?;
    }
    let imported =
        import(&src, quant, ctx).map_err(|e| BadInput(format!("{}: {e}", file.display())))?;
    let requantized = imported.requantized();
    let Imported {
        bytes: out,
        cfg,
        conversions,
        notes: more,
    } = imported;
    notes.extend(more);
    let source = provenance(file, &bytes, src.format, src.name.clone());
    let card = Card {
        schema: CARD_SCHEMA,
        model_sha256: sha256_hex(&out),
        source: source.clone(),
        tokenizer_file: tok_prov.clone(),
        rope_base: src.hyper.rope_base,
        rope_dim: src.hyper.rope_dim,
        conversions: conversions.iter().map(ConversionRow::from).collect(),
        notes: notes.clone(),
        tokenizer: vocab.clone(),
    };
    let card_path = super::card::path_for(output);
    write_atomic(output, &out)?;
    write_atomic(&card_path, serde_json::to_string(&card)?.as_bytes())?;
    Ok(Report {
        output: output.to_path_buf(),
        card: card_path,
        source,
        tokenizer: tok_prov,
        tokenizer_pieces: vocab.as_ref().map(|v| v.tokens.len()),
        quant: cfg.quant.name().into(),
        bytes: out.len() as u64,
        parameters: cfg.parameters(),
        context: cfg.seq_len,
        conversions,
        requantized,
        notes,
        seconds: start.elapsed().as_secs_f64(),
        peak_rss_bytes: peak_rss(),
    })
}

/// Prints an import report for people.
pub fn print_report(r: &Report) {
    println!(
        "{} -> {} ({}, {} parameters, context {}, {:.2} MiB)",
        r.source.file,
        r.output.display(),
        r.quant,
        r.parameters,
        r.context,
        r.bytes as f64 / (1u64 << 20) as f64
    );
    println!(
        "  source: {} {}, SHA-256 {}",
        r.source.format,
        r.source.name.as_deref().unwrap_or(""),
        r.source.sha256
    );
    for c in &r.conversions {
        println!(
            "  {:>4} tensors {} -> {}: {:?}",
            c.tensors, c.from, c.to, c.how
        );
    }
    match (&r.tokenizer_pieces, &r.tokenizer) {
        (Some(n), Some(p)) => println!("  tokenizer: {} ({n} pieces)", p.file),
        (Some(n), None) => println!("  tokenizer: the source's own ({n} pieces)"),
        _ => {}
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
    println!(
        "  card: {}; {:.2} s, peak memory {:.0} MiB",
        r.card.display(),
        r.seconds,
        r.peak_rss_bytes as f64 / (1u64 << 20) as f64
    );
}

/// Accuracy of every quantization of an imported model against the f32 import of its source
/// (the source's own weights, dequantized where it was quantized), under teacher forcing.
pub fn validate_imported(
    m: &ModelFile,
    card: &Card,
    source: Option<&Path>,
    prompt: &[u32],
    gen: usize,
) -> anyhow::Result<Vec<(Quant, Agreement)>> {
    let path = match source {
        Some(p) => p.to_path_buf(),
        None => m.path.with_file_name(&card.source.file),
    };
    let bytes = read_input(&path, "source").map_err(|e| {
        BadInput(format!(
            "{e} (validation needs the file {} was imported from: name it with --source)",
            m.path.display()
        ))
    })?;
    let sha = sha256_hex(&bytes);
    if sha != card.source.sha256 {
        return Err(BadInput(format!(
            "{}: SHA-256 {sha} is not the source {} was imported from ({})",
            path.display(),
            m.path.display(),
            card.source.sha256
        ))
        .into());
    }
    let src = parse_source(&bytes).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
    let ctx = Some(m.cfg.seq_len as usize);
    let reference = import(&src, Some(Quant::F32), ctx).map_err(BadInput)?;
    let make = |q: Quant| import(&src, Some(q), ctx).ok().map(|i| i.bytes);
    Ok(super::validate_with(&reference.bytes, make, prompt, gen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_before_reading() {
        let e = read_input(Path::new("/dev/zero"), "model").unwrap_err();
        assert!(e.0.contains("not a regular file"), "{}", e.0);
        assert!(read_input(Path::new("/"), "model").is_err());
        assert!(read_input(Path::new("/no/such/file"), "model").is_err());
    }

    #[test]
    fn unknown_files_are_named() {
        let e = parse_source(b"hello world, this is not a model at all........").unwrap_err();
        assert!(e.contains("neither"), "{e}");
    }
}
