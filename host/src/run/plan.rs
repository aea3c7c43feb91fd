//! Planning a job: the lab, the boards and the models with their prompts, checked before anything
//! is powered; every mistake in the arguments is bad input.

use std::{path::Path, sync::Arc};

use lab_config::Board;

use crate::{
    error::BadInput,
    model::{self, ModelFile},
    rig::Runtime,
    run::RunArgs,
};

use super::*;

/// A checked job: the lab, the boards, the models with their prompts. Building it powers
/// nothing; every mistake in the arguments is bad input.
pub struct Plan {
    pub(super) rt: Runtime,
    pub(super) boards: Vec<Board>,
    pub(super) plans: Vec<Arc<ModelPlan>>,
    pub(super) args: RunArgs,
}

impl Plan {
    /// The boards this job will use.
    pub fn board_names(&self) -> Vec<String> {
        self.boards.iter().map(|b| b.name.clone()).collect()
    }
}

/// Checks a job's arguments against the lab and resolves its models (generating presets once).
pub fn plan(lab_path: &Path, args: RunArgs) -> anyhow::Result<Plan> {
    let rt = Runtime::open(lab_path)?;
    if args.tokens == 0 || args.repeat == 0 {
        return Err(BadInput("--tokens and --repeat must be at least 1".into()).into());
    }
    for b in &args.boards {
        crate::lab::board_named(&rt.lab, b)?;
    }
    let boards: Vec<Board> = rt
        .lab
        .boards
        .iter()
        .filter(|b| args.boards.is_empty() || args.boards.contains(&b.name))
        .cloned()
        .collect();
    if boards.is_empty() {
        return Err(BadInput(format!("{} defines no boards", rt.lab.file.display())).into());
    }
    // Models and prompts are checked before any board is powered.
    let cache = model::cache_dir(&rt.lab);
    let specs = if args.models.is_empty() {
        vec![model::DEFAULT_MODEL.to_string()]
    } else {
        args.models.clone()
    };
    let mut plans = vec![];
    for spec in &specs {
        let path = model::resolve(spec, &cache)?;
        let file = ModelFile::load(&path)?;
        let sha256 = model::sha256_hex(&file.bytes);
        let mut card = model::card::Card::load_for(&path, &sha256).map_err(BadInput)?;
        // The vocabulary moves into the tokenizer (a 32 000-piece one is megabytes): the card
        // keeps the provenance.
        let tokenizer = card
            .as_mut()
            .and_then(|c| c.tokenizer.take())
            .map(|v| Arc::new(model::tokenizer::Spm::new(v)));
        let vocab = file.cfg.vocab_size;
        let prompt_ids = if !args.prompt_ids.is_empty() {
            if let Some(bad) = args.prompt_ids.iter().find(|&&i| i >= vocab) {
                return Err(BadInput(format!(
                    "--prompt-ids: id {bad} is outside the vocabulary of {} ({vocab} tokens)",
                    path.display()
                ))
                .into());
            }
            args.prompt_ids.clone()
        } else {
            match (&tokenizer, &card) {
                (Some(t), _) => t.encode(&args.prompt, t.vocab.add_bos),
                (None, Some(_)) => {
                    return Err(BadInput(format!(
                        "{} was imported without a tokenizer: give the prompt as --prompt-ids (or re-import with --tokenizer)",
                        path.display()
                    ))
                    .into())
                }
                (None, None) => model::encode(&args.prompt, vocab)?,
            }
        };
        if prompt_ids.is_empty() {
            return Err(BadInput("the prompt has no tokens".into()).into());
        }
        let eos = match (&tokenizer, args.stop_at_eos) {
            (Some(t), true) => Some(t.vocab.eos),
            (None, true) => {
                return Err(BadInput(format!(
                    "--stop-at-eos: {} has no tokenizer, so no end-of-sequence token",
                    path.display()
                ))
                .into())
            }
            (_, false) => None,
        };
        if prompt_ids.len() > fwcore::fw::MAX_PROMPT {
            return Err(BadInput(format!(
                "--prompt is {} tokens; the firmware takes at most {}",
                prompt_ids.len(),
                fwcore::fw::MAX_PROMPT
            ))
            .into());
        }
        let ctx = prompt_ids.len() + args.tokens as usize;
        if ctx > file.cfg.seq_len as usize {
            return Err(BadInput(format!(
                "{} prompt tokens + {} generated exceed the context of {} ({} tokens)",
                prompt_ids.len(),
                args.tokens,
                path.display(),
                file.cfg.seq_len
            ))
            .into());
        }
        plans.push(Arc::new(ModelPlan {
            file,
            prompt_ids,
            sha256,
            card,
            tokenizer,
            eos,
        }));
    }
    Ok(Plan {
        rt,
        boards,
        plans,
        args,
    })
}
