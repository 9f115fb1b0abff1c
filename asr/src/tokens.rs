//! Whisper GPT-2 byte-level vocabulary (`vocabulary.txt` of the CTranslate2 model directory:
//! one token a line, line number = id) and faster-whisper's English word splitting.
//!
//! The English-only (`.en`) and the multilingual vocabularies differ by one text token, so
//! every special token sits one id higher in the multilingual one: the ids are looked up by
//! name, never assumed.

use std::collections::HashMap;

/// `<|endoftext|>` in the English-only vocabulary (tiny.en).
pub const EOT: usize = 50256;
/// `<|startoftranscript|>` in the English-only vocabulary (tiny.en).
pub const SOT: usize = 50257;
/// `<|endoftext|>` in the multilingual vocabulary (base).
pub const EOT_MULTILINGUAL: usize = 50257;

pub struct Vocab {
    tokens: Vec<String>,
    byte_of: HashMap<char, u8>,
    /// `<|endoftext|>`: every id below it is text, every id from it on is special.
    eot: usize,
}

/// GPT-2 `bytes_to_unicode`, inverted.
fn byte_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .map(|(b, c)| (char::from_u32(c).expect("valid char"), b as u8))
        .collect()
}

impl Vocab {
    pub fn from_text(text: &str) -> Vocab {
        let tokens: Vec<String> = text.lines().map(str::to_owned).collect();
        let eot = tokens
            .iter()
            .position(|t| t == "<|endoftext|>")
            .unwrap_or(EOT);
        Vocab {
            tokens,
            byte_of: byte_decoder(),
            eot,
        }
    }

    /// Id of `<|endoftext|>` (ids below it are text).
    pub fn eot(&self) -> usize {
        self.eot
    }

    /// Id of `<|startoftranscript|>` (the token after `<|endoftext|>` in both vocabularies).
    pub fn sot(&self) -> usize {
        self.eot + 1
    }

    /// The multilingual vocabulary (language and task tokens); else English-only.
    pub fn is_multilingual(&self) -> bool {
        self.eot == EOT_MULTILINGUAL
            && self.token(self.eot + 2) == Some("<|en|>")
            && self.id("<|transcribe|>").is_some()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(String::as_str)
    }

    pub fn id(&self, token: &str) -> Option<usize> {
        self.tokens.iter().position(|t| t == token)
    }

    /// Raw bytes of a text token.
    pub fn bytes(&self, id: usize) -> Vec<u8> {
        self.tokens
            .get(id)
            .map(|t| {
                t.chars()
                    .filter_map(|c| self.byte_of.get(&c).copied())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn decode(&self, ids: &[usize]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&i| i < self.eot)
            .flat_map(|&i| self.bytes(i))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// faster-whisper `split_tokens_on_spaces` (English): group text tokens (plus a trailing EOT)
    /// into words. Returns (word text, token ids).
    pub fn split_words(&self, ids: &[usize]) -> Vec<(String, Vec<usize>)> {
        // split_tokens_on_unicode: accumulate tokens until they decode to whole UTF-8.
        let mut subwords: Vec<(String, Vec<usize>)> = Vec::new();
        let mut cur: Vec<usize> = Vec::new();
        let mut cur_bytes: Vec<u8> = Vec::new();
        for &id in ids {
            cur.push(id);
            if id >= self.eot {
                let text = self.token(id).unwrap_or("").to_owned();
                subwords.push((text, std::mem::take(&mut cur)));
                cur_bytes.clear();
                continue;
            }
            cur_bytes.extend(self.bytes(id));
            if let Ok(s) = std::str::from_utf8(&cur_bytes) {
                subwords.push((s.to_owned(), std::mem::take(&mut cur)));
                cur_bytes.clear();
            }
        }
        let mut words: Vec<(String, Vec<usize>)> = Vec::new();
        for (sub, toks) in subwords {
            let special = toks[0] >= self.eot;
            let with_space = sub.starts_with(' ');
            let trimmed = sub.trim();
            let punctuation =
                trimmed.len() == 1 && trimmed.chars().all(|c| c.is_ascii_punctuation());
            if special || with_space || punctuation || words.is_empty() {
                words.push((sub, toks));
            } else if let Some(last) = words.last_mut() {
                last.0.push_str(&sub);
                last.1.extend(toks);
            }
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_decoder_maps_space_marker() {
        let d = byte_decoder();
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'a'], b'a');
        assert_eq!(d.len(), 256);
    }

    /// A stand-in vocabulary: `text_tokens` text entries, then the special tokens in Whisper's
    /// order.
    fn vocab_with(text_tokens: usize, multilingual: bool) -> Vocab {
        let mut lines: Vec<String> = (0..text_tokens).map(|i| format!("t{i}")).collect();
        lines[0] = "Ġone".into();
        lines[1] = "Ġtwo".into();
        lines.push("<|endoftext|>".into());
        lines.push("<|startoftranscript|>".into());
        if multilingual {
            lines.push("<|en|>".into());
            lines.push("<|transcribe|>".into());
        }
        Vocab::from_text(&lines.join("\n"))
    }

    #[test]
    fn special_ids_follow_the_vocabulary() {
        let en = vocab_with(EOT, false);
        assert_eq!((en.eot(), en.sot()), (EOT, SOT));
        assert!(!en.is_multilingual());
        let multi = vocab_with(EOT_MULTILINGUAL, true);
        assert_eq!(multi.eot(), EOT_MULTILINGUAL);
        assert_eq!(multi.sot(), EOT_MULTILINGUAL + 1);
        assert!(multi.is_multilingual());
        // Id 50256 is text in the multilingual vocabulary, the end marker in the English one.
        assert_eq!(multi.decode(&[0, 1, EOT]), " one twot50256");
        assert_eq!(en.decode(&[0, 1, EOT]), " one two");
        let words = multi.split_words(&[0, 1, EOT_MULTILINGUAL]);
        assert_eq!(words.len(), 3, "two words and the end marker");
        assert_eq!(words[2].1, vec![EOT_MULTILINGUAL]);
    }
}
