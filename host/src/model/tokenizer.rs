//! Tokenizers on the host: the SentencePiece-style BPE of llama-family models (a vocabulary of
//! pieces with scores and types, from a GGUF file or llama2.c's `tokenizer.bin`), encoded the way
//! llama.cpp and llama2.c do it, and the byte-level tokenizer of generated presets.

use std::collections::{BinaryHeap, HashMap};

/// Token types as GGUF numbers them (`tokenizer.ggml.token_type`).
pub const TYPE_NORMAL: i32 = 1;
pub const TYPE_UNKNOWN: i32 = 2;
pub const TYPE_CONTROL: i32 = 3;
pub const TYPE_UNUSED: i32 = 5;
pub const TYPE_BYTE: i32 = 6;

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

/// A SentencePiece vocabulary. Pieces use `▁` for a space, as GGUF stores them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Vocab {
    /// Where it came from: `gguf` or `tokenizer.bin`.
    pub source: String,
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<i32>,
    pub bos: u32,
    pub eos: u32,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_space_prefix: bool,
}

/// Symbols are UTF-8 characters of the text, merged pairwise.
struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two neighbouring symbols: the highest score first, then the leftmost.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// A tokenizer ready to encode: the vocabulary and its piece → id index.
pub struct Spm {
    pub vocab: Vocab,
    index: HashMap<String, u32>,
}

impl Vocab {
    /// Checks the vocabulary is usable for `model_vocab` ids.
    pub fn check(&self, model_vocab: usize) -> Result<(), String> {
        let n = self.tokens.len();
        if n == 0 {
            return Err("the vocabulary is empty".into());
        }
        if self.scores.len() != n || self.types.len() != n {
            return Err(format!(
                "the vocabulary has {n} tokens but {} scores and {} types",
                self.scores.len(),
                self.types.len()
            ));
        }
        if n != model_vocab {
            return Err(format!(
                "the tokenizer has {n} tokens, the model's vocabulary {model_vocab}"
            ));
        }
        for (what, id) in [
            ("BOS", Some(self.bos)),
            ("EOS", Some(self.eos)),
            ("UNK", self.unk),
        ] {
            if let Some(id) = id.filter(|&i| i as usize >= n) {
                return Err(format!("{what} id {id} is outside the vocabulary of {n}"));
            }
        }
        Ok(())
    }

    /// One line for `runs.tokenizer`: `spm:gguf (32000 pieces)`.
    pub fn label(&self) -> String {
        format!("spm:{} ({} pieces)", self.source, self.tokens.len())
    }

    /// The byte a `<0xNN>` byte token stands for.
    fn byte_of(&self, id: usize) -> Option<u8> {
        let t = self.tokens[id].as_str();
        if self.types[id] != TYPE_BYTE && !(t.len() == 6 && t.starts_with("<0x")) {
            return None;
        }
        let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
        u8::from_str_radix(hex, 16).ok()
    }

    /// The bytes a token decodes to: its piece with `▁` as a space, the byte of a byte token,
    /// nothing for control and unknown tokens.
    pub fn piece_bytes(&self, id: u32) -> Vec<u8> {
        let i = id as usize;
        if i >= self.tokens.len() {
            return vec![];
        }
        if let Some(b) = self.byte_of(i) {
            return vec![b];
        }
        match self.types[i] {
            TYPE_CONTROL | TYPE_UNKNOWN | TYPE_UNUSED => vec![],
            _ => self.tokens[i].replace(SPACE, " ").into_bytes(),
        }
    }

    /// A token as readable text (`tokens.piece`): its piece, or `<0xNN>` for a lone byte that is
    /// not text by itself, or the control token's name.
    pub fn piece(&self, id: u32) -> String {
        let i = id as usize;
        if i >= self.tokens.len() {
            return format!("<id {id}>");
        }
        if matches!(self.types[i], TYPE_CONTROL | TYPE_UNKNOWN) {
            return self.tokens[i].clone();
        }
        let b = self.piece_bytes(id);
        match String::from_utf8(b) {
            Ok(s) => s,
            Err(_) => self.tokens[i].clone(),
        }
    }
}

impl Spm {
    pub fn new(vocab: Vocab) -> Spm {
        let mut index = HashMap::with_capacity(vocab.tokens.len());
        // The first of duplicate pieces wins, as in llama.cpp's map insertion.
        for (i, t) in vocab.tokens.iter().enumerate() {
            index.entry(t.clone()).or_insert(i as u32);
        }
        Spm { vocab, index }
    }

    fn byte_token(&self, b: u8) -> Option<u32> {
        self.index
            .get(&format!("<0x{b:02X}>"))
            .or_else(|| {
                let s = [b];
                std::str::from_utf8(&s).ok().and_then(|s| self.index.get(s))
            })
            .copied()
            .or(self.vocab.unk)
    }

    /// Token ids of `text`: BOS first (when the vocabulary asks for it), a leading space, spaces
    /// as `▁`, then the highest-scoring merges of neighbouring symbols whose concatenation is a
    /// piece, until none is left; characters without a piece fall back to byte tokens.
    pub fn encode(&self, text: &str, bos: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if bos {
            out.push(self.vocab.bos);
        }
        if text.is_empty() {
            return out;
        }
        let mut s = String::with_capacity(text.len() + 3);
        if self.vocab.add_space_prefix {
            s.push_str(SPACE);
        }
        s.push_str(&text.replace(' ', SPACE));
        let mut syms: Vec<Sym> = s
            .char_indices()
            .map(|(i, c)| Sym {
                start: i,
                len: c.len_utf8(),
                prev: None,
                next: None,
            })
            .collect();
        let n = syms.len();
        for (i, sym) in syms.iter_mut().enumerate() {
            sym.prev = i.checked_sub(1);
            sym.next = (i + 1 < n).then_some(i + 1);
        }
        let mut heap = BinaryHeap::new();
        let bigram = |syms: &[Sym], left: usize, right: usize, heap: &mut BinaryHeap<Bigram>| {
            let (a, b) = (&syms[left], &syms[right]);
            let piece = &s[a.start..b.start + b.len];
            if let Some(&id) = self.index.get(piece) {
                heap.push(Bigram {
                    score: self.vocab.scores[id as usize],
                    left,
                    right,
                    len: piece.len(),
                });
            }
        };
        for i in 1..n {
            bigram(&syms, i - 1, i, &mut heap);
        }
        while let Some(bg) = heap.pop() {
            let (l, r) = (bg.left, bg.right);
            // Stale: one side was merged away or grew since this pair was queued.
            if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != bg.len {
                continue;
            }
            syms[l].len += syms[r].len;
            syms[r].len = 0;
            syms[l].next = syms[r].next;
            if let Some(nx) = syms[r].next {
                syms[nx].prev = Some(l);
            }
            if let Some(p) = syms[l].prev {
                bigram(&syms, p, l, &mut heap);
            }
            if let Some(nx) = syms[l].next {
                bigram(&syms, l, nx, &mut heap);
            }
        }
        let mut i = Some(0);
        while let Some(k) = i {
            let sym = &syms[k];
            let piece = &s[sym.start..sym.start + sym.len];
            match self.index.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().filter_map(|b| self.byte_token(b))),
            }
            i = sym.next;
        }
        out
    }

    /// Text of `ids`: pieces concatenated (byte tokens joined into UTF-8), control tokens
    /// dropped, and the leading space the encoder added after BOS removed.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        let mut after_bos = false;
        for &id in ids {
            if id == self.vocab.bos {
                after_bos = true;
                continue;
            }
            let mut b = self.vocab.piece_bytes(id);
            if after_bos && !b.is_empty() {
                if self.vocab.add_space_prefix && b[0] == b' ' {
                    b.remove(0);
                }
                after_bos = false;
            }
            bytes.extend(b);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Text of generated ids, as they continue a prompt (no space is removed).
    pub fn continuation(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| self.vocab.piece_bytes(i))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The byte-level tokenizer of generated models: one token per UTF-8 byte (ids 0–255), so any
/// text maps to ids and back. Models with a vocabulary under 256 cannot take text prompts.
pub fn byte_encode(text: &str, vocab: u32) -> Result<Vec<u32>, crate::error::BadInput> {
    use crate::error::BadInput;
    if vocab < 256 {
        return Err(BadInput(format!(
            "the byte-level tokenizer needs a vocabulary of at least 256 (this model has {vocab})"
        )));
    }
    if text.is_empty() {
        return Err(BadInput("--prompt is empty".into()));
    }
    Ok(text.bytes().map(u32::from).collect())
}

/// A byte-level token as text: the character for ids below 128, `<0xNN>` for the other bytes,
/// nothing past 255 (a generated model's vocabulary is larger).
pub fn byte_piece(id: u32) -> Option<String> {
    match id {
        0..=127 => Some(char::from(id as u8).to_string()),
        128..=255 => Some(format!("<0x{id:02X}>")),
        _ => None,
    }
}

/// Byte-level ids as text: the bytes, with ids past 255 (no text) as U+FFFD.
pub fn byte_text(ids: &[u32]) -> String {
    let mut b = Vec::with_capacity(ids.len());
    for &i in ids {
        match u8::try_from(i) {
            Ok(x) => b.push(x),
            Err(_) => b.extend_from_slice("\u{fffd}".as_bytes()),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Reads llama2.c's `tokenizer.bin`: an i32 longest-piece length, then per token an f32 score, an
/// i32 length and the piece's bytes (spaces as plain spaces). Ids 0, 1 and 2 are `<unk>`, BOS and
/// EOS; `<0xNN>` pieces are byte tokens.
pub fn read_tokenizer_bin(b: &[u8], vocab_size: usize) -> Result<Vocab, String> {
    let mut at = 0usize;
    let mut take = |n: usize, what: &str| -> Result<&[u8], String> {
        if b.len() - at < n {
            return Err(format!("tokenizer.bin ends inside {what} at byte {at}"));
        }
        at += n;
        Ok(&b[at - n..at])
    };
    let i32_of = |s: &[u8]| i32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let max_len = i32_of(take(4, "the header")?);
    if !(1..=1024).contains(&max_len) {
        return Err(format!(
            "tokenizer.bin: longest piece {max_len} bytes (1..1024 expected): not a llama2.c tokenizer"
        ));
    }
    let (mut tokens, mut scores, mut types) = (vec![], vec![], vec![]);
    for i in 0..vocab_size {
        let score = f32::from_le_bytes(take(4, "a score")?.try_into().expect("4 bytes"));
        let len = i32_of(take(4, "a piece length")?);
        if len < 0 || len > max_len {
            return Err(format!(
                "tokenizer.bin: token {i} is {len} bytes long (the header says at most {max_len})"
            ));
        }
        let piece = String::from_utf8_lossy(take(len as usize, "a piece")?).into_owned();
        let ty = match i {
            0 => TYPE_UNKNOWN,
            1 | 2 => TYPE_CONTROL,
            _ if piece.len() == 6 && piece.starts_with("<0x") && piece.ends_with('>') => TYPE_BYTE,
            _ => TYPE_NORMAL,
        };
        // llama2.c's export turned `▁` into spaces; store pieces as GGUF does.
        tokens.push(if ty == TYPE_NORMAL {
            piece.replace(' ', SPACE)
        } else {
            piece
        });
        scores.push(score);
        types.push(ty);
    }
    if at != b.len() {
        return Err(format!(
            "tokenizer.bin has {} bytes after {vocab_size} tokens: it belongs to a model with a bigger vocabulary",
            b.len() - at
        ));
    }
    Ok(Vocab {
        source: "tokenizer.bin".into(),
        tokens,
        scores,
        types,
        bos: 1,
        eos: 2,
        unk: Some(0),
        add_bos: true,
        add_space_prefix: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `<unk> <s> </s>`, 256 byte tokens, then pieces with scores.
    pub fn small_vocab(pieces: &[(&str, f32)]) -> Vocab {
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        let mut types = vec![TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(TYPE_BYTE);
        }
        let mut scores = vec![0.0; tokens.len()];
        for (p, s) in pieces {
            tokens.push(p.replace(' ', SPACE));
            types.push(TYPE_NORMAL);
            scores.push(*s);
        }
        Vocab {
            source: "test".into(),
            tokens,
            scores,
            types,
            bos: 1,
            eos: 2,
            unk: Some(0),
            add_bos: true,
            add_space_prefix: true,
        }
    }

    #[test]
    fn merges_the_best_pairs_and_falls_back_to_bytes() {
        let v = small_vocab(&[
            (" ", -1.0),
            ("h", -2.0),
            ("i", -2.0),
            ("hi", -0.5),
            (" hi", -0.1),
            ("!", -3.0),
        ]);
        let t = Spm::new(v);
        let ids = t.encode("hi hi!é", true);
        let p: Vec<String> = ids.iter().map(|&i| t.vocab.piece(i)).collect();
        // é has no piece: its two UTF-8 bytes become byte tokens.
        assert_eq!(p, ["<s>", " hi", " hi", "!", "<0xC3>", "<0xA9>"]);
        assert_eq!(t.decode(&ids), "hi hi!é");
        assert_eq!(t.encode("", true), vec![1]);
        assert_eq!(t.decode(&t.encode("  hi", true)), "  hi");
    }

    #[test]
    fn tokenizer_bin_round_trips() {
        let mut b = 16i32.to_le_bytes().to_vec();
        let mut piece = |s: &str, score: f32| {
            b.extend_from_slice(&score.to_le_bytes());
            b.extend_from_slice(&(s.len() as i32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        piece("<unk>", 0.0);
        piece("\n<s>\n", 0.0);
        piece("\n</s>\n", 0.0);
        for x in 0..=255u8 {
            piece(&format!("<0x{x:02X}>"), 0.0);
        }
        piece(" a", -1.0);
        piece("a", -2.0);
        piece(" ", -3.0);
        let v = read_tokenizer_bin(&b, 262).unwrap();
        assert_eq!(v.tokens[259], "\u{2581}a");
        let t = Spm::new(v);
        assert_eq!(t.encode("a a", true), vec![1, 259, 259]);
        assert!(read_tokenizer_bin(&b, 263)
            .unwrap_err()
            .contains("ends inside"));
        assert!(read_tokenizer_bin(&b, 261).unwrap_err().contains("bigger"));
        assert!(read_tokenizer_bin(&b[..3], 262).is_err());
    }
}
