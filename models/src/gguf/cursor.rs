//! GGUF's encodings on the shared bounds-checked cursor: u64 lengths, strings and typed
//! metadata values. Errors say what was being read (`metadata \`general.name\``, `the table
//! entry of tensor \`blk.0.attn_q.weight\``).

use super::value::GgufValue;

/// Array nesting deeper than this is refused (the format allows it; no model uses it).
const MAX_DEPTH: usize = 4;

/// The shared byte cursor; this module adds GGUF's lengths, strings and typed values.
pub(crate) use crate::byte_cursor::ByteCursor as Cursor;

impl Cursor<'_> {
    pub(crate) fn len(&mut self, what: &str) -> Result<usize, String> {
        let n = self.u64(what)?;
        // Every element takes at least one byte: a count past the end of the file is corrupt.
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or_else(|| format!("{what}: length {n} runs past the end of the file"))
    }

    pub(crate) fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.len(what)?;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    pub(crate) fn value(
        &mut self,
        type_id: u32,
        what: &str,
        depth: usize,
    ) -> Result<GgufValue, String> {
        Ok(match type_id {
            0 => GgufValue::U8(self.array::<1>(what)?[0]),
            1 => GgufValue::I8(self.array::<1>(what)?[0].cast_signed()),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                other => return Err(format!("{what}: bool byte is {other}, not 0 or 1")),
            },
            8 => GgufValue::String(self.string(what)?),
            9 if depth < MAX_DEPTH => {
                let element_type = self.u32(what)?;
                let n = self.len(what)?;
                let items = (0..n)
                    .map(|_| self.value(element_type, what, depth + 1))
                    .collect::<Result<_, _>>()?;
                GgufValue::Array(items)
            }
            9 => return Err(format!("{what}: arrays nested deeper than {MAX_DEPTH}")),
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(format!("{what}: unknown value type {other}")),
        })
    }
}
