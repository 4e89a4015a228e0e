//! A reader for CTranslate2's `model.bin` (binary version 6, what `ct2-transformers-converter`
//! writes and faster-whisper loads): the model spec's name and revision, then named variables
//! (rank, dimensions, data type, raw little-endian bytes), then aliases (`decoder/projection/
//! weight` → `decoder/embeddings/weight` for Whisper's tied output). The layout is CTranslate2's
//! `ModelSpec._serialize`; strings are a u16 length that counts a trailing NUL.
//!
//! The whole file is read once; tensors are converted to f32 on request. Every failure names
//! the file and the variable or field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ModelError;
use crate::byte_cursor::ByteCursor;
use crate::float_bytes::{StoredFloat, widen_to_f32};
use crate::json::read_file;

/// The binary version this reader understands: what CTranslate2 3 and later write (older
/// layouts were never seen here, so they are refused rather than guessed at).
const SUPPORTED_VERSION: u32 = 6;

/// A variable's element type, in CTranslate2's `DataType` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    /// IEEE f32.
    F32,
    /// Signed bytes (quantised weights with a separate `*_scale`, or small scalars).
    I8,
    /// i16 scalars and tables.
    I16,
    /// i32 scalars and tables.
    I32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    Bf16,
}

impl Ct2Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One variable's metadata and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct2Variable {
    /// Dimensions, outermost first (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Ct2Dtype,
    offset: usize,
    len: usize,
}

/// A parsed `model.bin`.
#[derive(Debug)]
pub struct Ct2File {
    path: PathBuf,
    spec: String,
    revision: u32,
    bytes: Vec<u8>,
    variables: HashMap<String, Ct2Variable>,
    aliases: HashMap<String, String>,
}

impl Ct2File {
    /// Reads and parses `path`.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = read_file(path)?;
        Self::parse(path, bytes)
    }

    /// Parses the bytes of a `model.bin` (`path` only names it in errors).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let fail = |reason: String| ModelError::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let mut cursor = ByteCursor::new(&bytes);
        let version = cursor.u32("the binary version").map_err(fail)?;
        if version != SUPPORTED_VERSION {
            return Err(fail(format!(
                "CTranslate2 binary version {version} is not supported (expected {SUPPORTED_VERSION}); is this a CTranslate2 model.bin?"
            )));
        }
        let spec = read_string(&mut cursor, "the spec name").map_err(fail)?;
        let revision = cursor.u32("the revision").map_err(fail)?;
        let count = cursor.u32("the variable count").map_err(fail)?;
        let mut variables = HashMap::new();
        for index in 0..count {
            let name =
                read_string(&mut cursor, &format!("the name of variable {index}")).map_err(fail)?;
            let variable =
                read_variable(&mut cursor, &format!("variable `{name}`")).map_err(fail)?;
            variables.insert(name, variable);
        }
        let mut aliases = HashMap::new();
        let count = cursor.u32("the alias count").map_err(fail)?;
        for index in 0..count {
            let alias = read_string(&mut cursor, &format!("alias {index}")).map_err(fail)?;
            let target = read_string(&mut cursor, &format!("the target of alias `{alias}`"))
                .map_err(fail)?;
            aliases.insert(alias, target);
        }
        Ok(Self {
            path: path.to_path_buf(),
            spec,
            revision,
            bytes,
            variables,
            aliases,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model spec's name (`WhisperSpec`).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The spec's revision (3 for current Whisper conversions).
    pub fn revision(&self) -> u32 {
        self.revision
    }

    /// Number of stored variables (aliases not counted).
    pub fn len(&self) -> usize {
        self.variables.len()
    }

    /// Whether the file has no variables.
    pub fn is_empty(&self) -> bool {
        self.variables.is_empty()
    }

    /// The variable `name`, following an alias.
    pub fn variable(&self, name: &str) -> Option<&Ct2Variable> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.variables.get(name)
    }

    /// The variable `name` as f32 values (from f32, f16 or bf16), checking its shape.
    pub fn f32_tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let variable = self.require(name)?;
        if variable.shape != shape {
            return Err(self.tensor_error(
                name,
                format!("shape {:?}, expected {shape:?}", variable.shape),
            ));
        }
        let bytes = &self.bytes[variable.offset..variable.offset + variable.len];
        let kind = match variable.dtype {
            Ct2Dtype::F32 => StoredFloat::F32,
            Ct2Dtype::F16 => StoredFloat::F16,
            Ct2Dtype::Bf16 => StoredFloat::Bf16,
            other => {
                return Err(self.tensor_error(
                    name,
                    format!(
                        "type {other:?} is not a float type (int8-quantised CTranslate2 models are not supported; convert with --quantization float16)"
                    ),
                ));
            }
        };
        Ok(widen_to_f32(kind, bytes))
    }

    /// The integer scalar `name` (i8, i16 or i32, rank 0).
    pub fn int_scalar(&self, name: &str) -> Result<i64, ModelError> {
        let variable = self.require(name)?;
        if !variable.shape.is_empty() {
            return Err(self.tensor_error(
                name,
                format!("shape {:?}, expected a scalar", variable.shape),
            ));
        }
        let b = &self.bytes[variable.offset..variable.offset + variable.len];
        Ok(match variable.dtype {
            Ct2Dtype::I8 => i64::from(b[0] as i8),
            Ct2Dtype::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            Ct2Dtype::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            other => {
                return Err(self.tensor_error(name, format!("type {other:?}, expected an integer")));
            }
        })
    }

    fn require(&self, name: &str) -> Result<&Ct2Variable, ModelError> {
        self.variable(name)
            .ok_or_else(|| self.tensor_error(name, "missing".to_owned()))
    }

    fn tensor_error(&self, name: &str, reason: String) -> ModelError {
        ModelError::Tensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            reason,
        }
    }
}

/// A CTranslate2 string: a u16 length that counts a trailing NUL, then the bytes.
fn read_string(cursor: &mut ByteCursor<'_>, what: &str) -> Result<String, String> {
    let len = usize::from(cursor.u16(what)?);
    let raw = cursor.take(len, what)?;
    let text = raw.strip_suffix(&[0]).unwrap_or(raw);
    String::from_utf8(text.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// A variable's rank, dimensions, type and data; the data is skipped, its place kept.
fn read_variable(cursor: &mut ByteCursor<'_>, what: &str) -> Result<Ct2Variable, String> {
    let rank = usize::from(cursor.u8(what)?);
    let shape = (0..rank)
        .map(|_| cursor.u32(what).map(|d| d as usize))
        .collect::<Result<Vec<_>, _>>()?;
    let type_id = cursor.u8(what)?;
    let dtype = Ct2Dtype::from_id(type_id)
        .ok_or_else(|| format!("{what}: unknown data type id {type_id}"))?;
    let len = cursor.u32(what)? as usize;
    let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if elements.and_then(|n| n.checked_mul(dtype.size())) != Some(len) {
        return Err(format!(
            "{what}: {len} bytes of data for shape {shape:?} of {dtype:?} ({} expected)",
            elements.map_or(usize::MAX, |n| n.saturating_mul(dtype.size()))
        ));
    }
    let offset = cursor.at;
    cursor.take(len, what)?;
    Ok(Ct2Variable {
        shape,
        dtype,
        offset,
        len,
    })
}
