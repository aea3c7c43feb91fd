//! The model card: a JSON file beside an imported model (`MODEL.ltlm.json`) holding what the
//! board does not need — where the model came from (file, SHA-256, format), how each tensor was
//! converted, and the tokenizer — so the host can encode prompts and decode output while the
//! board's flash holds only the weights.

use std::path::{Path, PathBuf};

use super::import::Conversion;
use super::tokenizer::Vocab;

pub const CARD_SCHEMA: u32 = 1;
/// A card larger than this is not a card (a 256 000-piece vocabulary is a few MB).
const MAX_CARD_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// The source file's name (not its directory: cards travel with models).
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// `gguf`, `llama2c-v0`, `llama2c-v1`, `llama2c-v2`.
    pub format: String,
    /// `general.name` of a GGUF, when it has one.
    pub name: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Card {
    pub schema: u32,
    /// SHA-256 of the model file this card describes.
    pub model_sha256: String,
    pub source: Provenance,
    /// The tokenizer file, when it came from its own file (llama2.c's `tokenizer.bin`).
    pub tokenizer_file: Option<Provenance>,
    pub rope_base: f64,
    pub rope_dim: usize,
    pub conversions: Vec<ConversionRow>,
    pub notes: Vec<String>,
    pub tokenizer: Option<Vocab>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConversionRow {
    pub from: String,
    pub to: String,
    pub how: String,
    pub tensors: usize,
}

impl From<&Conversion> for ConversionRow {
    fn from(c: &Conversion) -> Self {
        ConversionRow {
            from: c.from.clone(),
            to: c.to.clone(),
            how: serde_json::to_value(c.how)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            tensors: c.tensors,
        }
    }
}

/// Where the card of `model` lives.
pub fn path_for(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

impl Card {
    /// The tokenizer's one-line description for `runs.tokenizer`.
    pub fn tokenizer_label(&self) -> String {
        match &self.tokenizer {
            Some(v) => v.label(),
            None => "none".into(),
        }
    }

    /// Reads the card beside `model`, if there is one, and checks it describes these bytes.
    pub fn load_for(model: &Path, model_sha256: &str) -> Result<Option<Card>, String> {
        let p = path_for(model);
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("model card {}: {e}", p.display())),
        };
        if !meta.is_file() || meta.len() > MAX_CARD_BYTES {
            return Err(format!(
                "model card {} is not a regular file of at most {} MiB",
                p.display(),
                MAX_CARD_BYTES >> 20
            ));
        }
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("model card {}: {e}", p.display()))?;
        let card: Card = serde_json::from_str(&text).map_err(|e| {
            format!(
                "model card {}:{}:{}: {e}",
                p.display(),
                e.line(),
                e.column()
            )
        })?;
        if card.schema > CARD_SCHEMA {
            return Err(format!(
                "model card {} has schema {}, newer than this labctl ({CARD_SCHEMA})",
                p.display(),
                card.schema
            ));
        }
        if card.model_sha256 != model_sha256 {
            return Err(format!(
                "model card {} describes another model (SHA-256 {}…, the file is {}…): re-import the model or remove the card",
                p.display(),
                &card.model_sha256.get(..12).unwrap_or(""),
                &model_sha256[..12.min(model_sha256.len())]
            ));
        }
        Ok(Some(card))
    }
}
