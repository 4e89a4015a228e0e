//! Text → phoneme ids the way Piper does it: espeak-ng IPA per clause, the clause's
//! punctuation kept as a phoneme (a space after `,` `:` `;`), NFD-normalised characters mapped
//! through the voice's `phoneme_id_map`, every phoneme followed by the padding id, between a
//! start and an end marker; one id sequence per sentence, so a long text streams sentence by
//! sentence.
//!
//! espeak-ng runs as the `espeak-ng` program (Debian's `espeak-ng` package), text on its
//! standard input, never as arguments. Its command line prints one line of phonemes per clause
//! but drops the punctuation that ended it (Debian's library lacks
//! `espeak_TextToPhonemesWithTerminator`), so the clauses are also found here, by the same
//! rule (clause punctuation followed by a space or the end); when the two disagree (a clause
//! longer than espeak's buffer), each clause is phonemized on its own.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use unicode_normalization::UnicodeNormalization;

use super::voice_config::{PhonemeType, VoiceConfig};
use crate::ModelError;

/// The program: `$HEARTH_ESPEAK_NG` for installs outside `PATH`, else `espeak-ng`.
fn espeak_program() -> String {
    std::env::var("HEARTH_ESPEAK_NG").unwrap_or_else(|_| "espeak-ng".into())
}

/// One sentence, ready for [`super::VitsModel::synthesize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// The sentence's text as written.
    pub text: String,
    /// Its phonemes (IPA and punctuation).
    pub phonemes: String,
    /// The voice's ids for them, with start, end and padding markers.
    pub ids: Vec<i64>,
}

/// A clause as the text has it: its words and the punctuation that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    text: String,
    terminator: Option<char>,
}

impl Clause {
    fn ends_sentence(&self) -> bool {
        matches!(self.terminator, Some('.' | '!' | '?' | '…'))
    }
}

fn is_clause_mark(c: char) -> bool {
    matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | '…')
}

/// Splits a paragraph into clauses: at `.` `,` `;` `:` `!` `?` `…` followed by whitespace or
/// the end, as espeak-ng does (so `$42.50` and `e.g` stay whole).
fn clauses(paragraph: &str) -> Vec<Clause> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = paragraph.chars().peekable();
    while let Some(c) = chars.next() {
        let at_boundary = chars.peek().is_none_or(|n| n.is_whitespace());
        if is_clause_mark(c) && at_boundary {
            // A run of marks ("?!", "...") ends the clause once, as its first mark.
            let run = current
                .chars()
                .rev()
                .take_while(|&m| is_clause_mark(m))
                .count();
            let kept = current.chars().count() - run;
            let terminator = current.chars().nth(kept).unwrap_or(c);
            let text = current
                .chars()
                .take(kept)
                .collect::<String>()
                .trim()
                .to_owned();
            current.clear();
            if !text.chars().any(char::is_alphanumeric) {
                // Nothing to say ("...", or "?!" after a clause, whose first mark ended it).
                continue;
            }
            out.push(Clause {
                text,
                terminator: Some(terminator),
            });
        } else {
            current.push(c);
        }
    }
    let rest = current.trim();
    if rest.chars().any(char::is_alphanumeric) {
        out.push(Clause {
            text: rest.to_owned(),
            terminator: None,
        });
    }
    out
}

/// Paragraphs (split at blank lines), each with its whitespace collapsed to single spaces.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(current.join(" "));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        out.push(current.join(" "));
    }
    out.into_iter()
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

/// Turns text into sentences of phoneme ids for one voice.
#[derive(Debug, Clone)]
pub struct Phonemizer {
    program: String,
    kind: PhonemeType,
    espeak_voice: String,
    id_map: HashMap<String, Vec<i64>>,
}

impl Phonemizer {
    /// The phonemizer `config` asks for. For espeak voices this checks that espeak-ng runs and
    /// knows the voice, so a missing package fails when the voice loads, not on a request.
    pub fn new(config: &VoiceConfig) -> Result<Self, ModelError> {
        Self::with_program(config, &espeak_program())
    }

    /// [`Phonemizer::new`] with espeak-ng at `program`.
    pub fn with_program(config: &VoiceConfig, program: &str) -> Result<Self, ModelError> {
        let phonemizer = Self {
            program: program.to_owned(),
            kind: config.phoneme_type.clone(),
            espeak_voice: config.espeak_voice.clone().unwrap_or_default(),
            id_map: config.phoneme_id_map.clone(),
        };
        match &phonemizer.kind {
            PhonemeType::Espeak => {
                let probe = phonemizer.espeak("a")?;
                if probe.iter().all(|l| l.trim().is_empty()) {
                    return Err(ModelError::Phonemizer(format!(
                        "espeak-ng gave no phonemes for voice `{}`",
                        phonemizer.espeak_voice
                    )));
                }
            }
            PhonemeType::Text => {}
            PhonemeType::Other(kind) => {
                return Err(ModelError::Phonemizer(format!(
                    "phoneme_type `{kind}` is not supported (espeak and text are)"
                )));
            }
        }
        Ok(phonemizer)
    }

    /// espeak-ng's phoneme lines for `text`.
    fn espeak(&self, text: &str) -> Result<Vec<String>, ModelError> {
        let program = &self.program;
        let mut child = Command::new(program)
            .args(["-q", "--ipa", "-v", &self.espeak_voice])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                ModelError::Phonemizer(if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "`{program}` is not installed: speech needs espeak-ng (Debian/Ubuntu: \
                         apt-get install espeak-ng; macOS: brew install espeak-ng)"
                    )
                } else {
                    format!("cannot run `{program}`: {e}")
                })
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // espeak reads all of it before answering, so writing first cannot deadlock on
            // texts of the endpoint's size (a few kB).
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| ModelError::Phonemizer(format!("writing to espeak-ng: {e}")))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| ModelError::Phonemizer(format!("espeak-ng: {e}")))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || stderr.contains("Failed to read voice") {
            return Err(ModelError::Phonemizer(format!(
                "espeak-ng voice `{}`: {} {}",
                self.espeak_voice,
                output.status,
                stderr.trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.trim().is_empty())
            .collect())
    }

    /// One clause's phonemes, as espeak prints them, without language-switch marks.
    fn clean(line: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut depth = 0usize;
        for c in line.chars() {
            match c {
                '(' => depth += 1,
                ')' if depth > 0 => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out.trim().to_owned()
    }

    /// Phonemes for each clause of `paragraph`.
    fn clause_phonemes(
        &self,
        found: &[Clause],
        paragraph: &str,
    ) -> Result<Vec<String>, ModelError> {
        if self.kind == PhonemeType::Text {
            return Ok(found.iter().map(|c| c.text.clone()).collect());
        }
        let lines = self.espeak(paragraph)?;
        if lines.len() == found.len() {
            return Ok(lines.iter().map(|l| Self::clean(l)).collect());
        }
        tracing::debug!(
            clauses = found.len(),
            lines = lines.len(),
            "espeak-ng split differently: one clause at a time"
        );
        found
            .iter()
            .map(|c| {
                let lines = self.espeak(&c.text)?;
                Ok(lines
                    .iter()
                    .map(|l| Self::clean(l))
                    .collect::<Vec<_>>()
                    .join(" "))
            })
            .collect()
    }

    /// `text` as sentences of ids. Empty or punctuation-only text gives none.
    pub fn sentences(&self, text: &str) -> Result<Vec<Sentence>, ModelError> {
        let mut sentences = Vec::new();
        for paragraph in paragraphs(text) {
            let found = clauses(&paragraph);
            if found.is_empty() {
                continue;
            }
            let phonemes = self.clause_phonemes(&found, &paragraph)?;
            let mut sentence_text = Vec::new();
            let mut sentence_phonemes = String::new();
            for (i, (clause, mut p)) in found.iter().zip(phonemes).enumerate() {
                if let Some(t) = clause.terminator {
                    p.push(t);
                    if matches!(t, ',' | ':' | ';') {
                        p.push(' ');
                    }
                }
                sentence_phonemes.push_str(&p);
                sentence_text.push(format!(
                    "{}{}",
                    clause.text,
                    clause.terminator.map(String::from).unwrap_or_default()
                ));
                if clause.ends_sentence() || i + 1 == found.len() {
                    let phonemes = std::mem::take(&mut sentence_phonemes).trim_end().to_owned();
                    let ids = self.ids(&phonemes);
                    // Only the markers: nothing to say (a clause espeak had no phonemes for).
                    if ids.len() > 3 {
                        sentences.push(Sentence {
                            text: sentence_text.join(" "),
                            phonemes,
                            ids,
                        });
                    }
                    sentence_text.clear();
                }
            }
        }
        Ok(sentences)
    }

    /// Phonemes → ids: `^ _ (p _)* $`; phonemes the voice lacks are skipped, as Piper does.
    pub fn ids(&self, phonemes: &str) -> Vec<i64> {
        let marker = |m: &str| self.id_map.get(m).cloned().unwrap_or_default();
        let pad = marker("_");
        let mut ids = marker("^");
        ids.extend(&pad);
        let mut missing = 0usize;
        for c in phonemes.nfd() {
            let mut key = [0u8; 4];
            match self.id_map.get(&*c.encode_utf8(&mut key)) {
                Some(found) => {
                    ids.extend(found);
                    ids.extend(&pad);
                }
                None => missing += 1,
            }
        }
        if missing > 0 {
            tracing::debug!(missing, "phonemes the voice has no id for were skipped");
        }
        ids.extend(marker("$"));
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_split_at_punctuation_before_a_space_or_the_end() {
        let found = clauses("Hello, world! It costs $42.50; Dr. Smith said: no?! Fine");
        let texts: Vec<(&str, Option<char>)> = found
            .iter()
            .map(|c| (c.text.as_str(), c.terminator))
            .collect();
        assert_eq!(
            texts,
            [
                ("Hello", Some(',')),
                ("world", Some('!')),
                ("It costs $42.50", Some(';')),
                ("Dr", Some('.')),
                ("Smith said", Some(':')),
                ("no", Some('?')),
                ("Fine", None),
            ]
        );
        assert!(clauses("  ... !? ").is_empty());
    }

    #[test]
    fn paragraphs_split_at_blank_lines_and_collapse_whitespace() {
        assert_eq!(
            paragraphs("One\ntwo  three\n\n \n\tFour\n"),
            ["One two three", "Four"]
        );
        assert!(paragraphs("\n \n").is_empty());
    }

    #[test]
    fn language_switch_marks_are_dropped() {
        assert_eq!(Phonemizer::clean("(en)hˈɛloʊ(fr) wˈɜːld "), "hˈɛloʊ wˈɜːld");
    }
}
