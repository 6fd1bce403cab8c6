//! The HPACK decoder (RFC 7541 §3, §6).

use super::huffman;
use super::table::{first_with_same_name, static_name_index, DynTable, STATIC, STATIC_LEN};
use super::{DecodeError, Field};

/// Largest integer the decoder accepts (§5.1 lets a decoder bound both the
/// value and the number of octets): far above any table size, index or
/// string length a header block can carry, and safe in a 32-bit `usize`.
const MAX_INT: u64 = u32::MAX as u64;

/// Decodes an integer with an N-bit prefix (§5.1) starting at
/// `block[pos]`, which must exist: `(value, position after it)`.
#[inline]
pub(crate) fn decode_int(
    block: &[u8],
    pos: usize,
    prefix_bits: u32,
) -> Result<(usize, usize), DecodeError> {
    let mask = ((1u32 << prefix_bits) - 1) as u8;
    let first = block.get(pos).ok_or(DecodeError::Truncated)? & mask;
    if first < mask {
        return Ok((usize::from(first), pos + 1));
    }
    let mut value = u64::from(mask);
    let mut shift = 0u32;
    let mut p = pos + 1;
    loop {
        let b = *block.get(p).ok_or(DecodeError::Truncated)?;
        p += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > MAX_INT {
            return Err(DecodeError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok((value as usize, p));
        }
        shift += 7;
        // 5 continuation octets carry 35 bits: more can only be zero
        // padding, which bounds the octet length too.
        if shift > 28 {
            return Err(DecodeError::IntegerOverflow);
        }
    }
}

/// Where a decoded string is: in the block itself, or Huffman-decoded
/// into one of the decoder's scratch buffers.
#[derive(Clone, Copy)]
enum Str {
    Block(usize, usize),
    Scratch,
}

/// Reads a string literal (§5.2) at `*pos`, advancing it. A Huffman string
/// is decoded into `scratch` (cleared first, so its capacity is reused).
#[inline]
fn read_string(block: &[u8], pos: &mut usize, scratch: &mut Vec<u8>) -> Result<Str, DecodeError> {
    let huffman = *block.get(*pos).ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let (len, start) = decode_int(block, *pos, 7)?;
    if len > block.len() - start {
        return Err(DecodeError::StringTooLong);
    }
    let end = start + len;
    *pos = end;
    if huffman {
        scratch.clear();
        huffman::decode(&block[start..end], scratch)?;
        Ok(Str::Scratch)
    } else {
        Ok(Str::Block(start, end))
    }
}

#[inline]
fn resolve<'a>(s: Str, block: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
    match s {
        Str::Block(start, end) => &block[start..end],
        Str::Scratch => scratch,
    }
}

/// The name of a literal field representation.
#[derive(Clone, Copy)]
enum Name {
    /// Static index (1..=61).
    Static(u8),
    /// Dynamic entry, 0 = newest.
    Dynamic(usize),
    Literal(Str),
}

/// How a literal field is to be indexed (§6.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Indexing {
    Incremental,
    Without,
    Never,
}

fn no_evict(_: u64, _: &[u8], _: &[u8]) {}

/// Decodes header blocks of one connection direction, keeping the
/// dynamic table in sync with the peer's encoder.
///
/// Fields are handed out as borrowed slices of the block, the static
/// table, the dynamic table or two scratch buffers for Huffman strings
/// (reused from block to block), so decoding allocates nothing per field
/// once the buffers have grown.
#[derive(Debug)]
pub struct Decoder {
    table: DynTable,
    /// The largest size a dynamic table size update may set: our
    /// SETTINGS_HEADER_TABLE_SIZE.
    limit: usize,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Decoder {
    /// `max_table_size`: the SETTINGS_HEADER_TABLE_SIZE we advertise; a
    /// dynamic table size update above it is an error.
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: DynTable::new(max_table_size),
            limit: max_table_size,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// The limit changed (after our SETTINGS was acked): later size
    /// updates are checked against `n`, and the table is shrunk to `n` now
    /// if it is larger, since the peer's encoder may no longer count on
    /// more.
    pub fn set_max_table_size(&mut self, n: usize) {
        self.limit = n;
        if self.table.max_size() > n {
            self.table.set_max_size(n, no_evict);
        }
    }

    /// Current dynamic table size (RFC size: sum of name + value + 32).
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Decodes one complete header block (all CONTINUATION fragments
    /// joined by the caller), calling `emit` for each field in order.
    ///
    /// Always processes the whole block: the dynamic table must stay in
    /// sync even if the caller ignores fields. On error the table is in
    /// an unknown state, and the connection must end with
    /// COMPRESSION_ERROR.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut emit: impl FnMut(Field<'_>),
    ) -> Result<(), DecodeError> {
        let Decoder {
            table,
            limit,
            name_buf,
            value_buf,
        } = self;
        let mut pos = 0;
        // Size updates are allowed only before the first field (§4.2).
        let mut at_start = true;
        while pos < block.len() {
            let b = block[pos];
            if b & 0x80 != 0 {
                // Indexed field (§6.1).
                let (index, p) = decode_int(block, pos, 7)?;
                pos = p;
                at_start = false;
                emit(indexed(table, index)?);
                continue;
            }
            let (indexing, prefix) = if b & 0x40 != 0 {
                (Indexing::Incremental, 6)
            } else if b & 0x20 != 0 {
                // Dynamic table size update (§6.3).
                let (size, p) = decode_int(block, pos, 5)?;
                pos = p;
                if !at_start {
                    return Err(DecodeError::SizeUpdateNotAtStart);
                }
                if size > *limit {
                    return Err(DecodeError::SizeUpdateTooLarge);
                }
                table.set_max_size(size, no_evict);
                continue;
            } else if b & 0x10 != 0 {
                (Indexing::Never, 4)
            } else {
                (Indexing::Without, 4)
            };
            at_start = false;

            // Literal field (§6.2): name index or literal name, then value.
            let (index, p) = decode_int(block, pos, prefix)?;
            pos = p;
            let name = if index == 0 {
                Name::Literal(read_string(block, &mut pos, name_buf)?)
            } else if index <= STATIC_LEN {
                Name::Static(index as u8)
            } else if index - STATIC_LEN - 1 < table.len() {
                Name::Dynamic(index - STATIC_LEN - 1)
            } else {
                return Err(DecodeError::BadIndex);
            };
            let value = read_string(block, &mut pos, value_buf)?;
            let value_bytes = resolve(value, block, value_buf);

            let mut name = name;
            if indexing == Indexing::Incremental {
                let name_len = match name {
                    Name::Static(i) => STATIC[usize::from(i) - 1].0.len(),
                    Name::Dynamic(i) => table.get(i).map_or(0, |e| e.0.len()),
                    Name::Literal(s) => resolve(s, block, name_buf).len(),
                };
                let size = name_len + value_bytes.len() + super::table::ENTRY_OVERHEAD;
                if table.fits(size) {
                    let inserted = match name {
                        Name::Static(i) => {
                            let name_bytes = STATIC[usize::from(i) - 1].0;
                            let first = first_with_same_name(i);
                            table.insert(name_bytes, value_bytes, Some(first), no_evict)
                        }
                        Name::Dynamic(i) => table.insert_with_name_of(i, value_bytes, no_evict),
                        Name::Literal(s) => {
                            let name_bytes = resolve(s, block, name_buf);
                            // Insertion is rare: worth knowing the static
                            // name for every later reference to the entry.
                            let first = static_name_index(name_bytes);
                            table.insert(name_bytes, value_bytes, first, no_evict)
                        }
                    };
                    debug_assert!(inserted);
                    if let Some((n, v, static_name)) = table.get(0) {
                        emit(Field {
                            name: n,
                            value: v,
                            static_name,
                            never_index: false,
                        });
                    }
                    continue;
                }
                // Too large for the table: it is emptied and the entry is
                // not inserted (§4.4). A dynamic name must be saved first.
                if let Name::Dynamic(i) = name {
                    if let Some((n, _, _)) = table.get(i) {
                        name_buf.clear();
                        name_buf.extend_from_slice(n);
                    }
                    name = Name::Literal(Str::Scratch);
                }
                table.clear(no_evict);
            }

            let (name_bytes, static_name) = match name {
                Name::Static(i) => (STATIC[usize::from(i) - 1].0, Some(first_with_same_name(i))),
                Name::Dynamic(i) => match table.get(i) {
                    Some((n, _, s)) => (n, s),
                    None => return Err(DecodeError::BadIndex),
                },
                Name::Literal(s) => (resolve(s, block, name_buf), None),
            };
            emit(Field {
                name: name_bytes,
                value: resolve(value, block, value_buf),
                static_name,
                never_index: indexing == Indexing::Never,
            });
        }
        Ok(())
    }
}

/// The field of an indexed representation (§6.1).
#[inline]
fn indexed(table: &DynTable, index: usize) -> Result<Field<'_>, DecodeError> {
    if index == 0 {
        return Err(DecodeError::BadIndex);
    }
    if index <= STATIC_LEN {
        let (name, value) = STATIC[index - 1];
        return Ok(Field {
            name,
            value,
            static_name: Some(first_with_same_name(index as u8)),
            never_index: false,
        });
    }
    let (name, value, static_name) = table
        .get(index - STATIC_LEN - 1)
        .ok_or(DecodeError::BadIndex)?;
    Ok(Field {
        name,
        value,
        static_name,
        never_index: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7541 C.1.
    #[test]
    fn integer_examples() {
        // C.1.1: 10 with a 5-bit prefix.
        assert_eq!(decode_int(&[0b1110_1010], 0, 5), Ok((10, 1)));
        // C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(decode_int(&[0x1f, 0x9a, 0x0a], 0, 5), Ok((1337, 3)));
        // Top 3 bits are not the integer's.
        assert_eq!(decode_int(&[0xff, 0x9a, 0x0a, 0x99], 0, 5), Ok((1337, 3)));
        // C.1.3: 42 at an octet boundary (8-bit prefix).
        assert_eq!(decode_int(&[0x2a], 0, 8), Ok((42, 1)));
        // Exactly the prefix maximum needs one extra zero octet.
        assert_eq!(decode_int(&[0x1f, 0x00], 0, 5), Ok((31, 2)));
    }

    #[test]
    fn integer_errors() {
        assert_eq!(decode_int(&[0x1f], 0, 5), Err(DecodeError::Truncated));
        assert_eq!(decode_int(&[0x1f, 0x9a], 0, 5), Err(DecodeError::Truncated));
        assert_eq!(decode_int(&[], 0, 5), Err(DecodeError::Truncated));
        // 2^32 - 1 is accepted, 2^32 is not.
        let max = [0x7f, 0x80, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(decode_int(&max, 0, 7), Ok((u32::MAX as usize, 6)));
        let over = [0x7f, 0x81, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(decode_int(&over, 0, 7), Err(DecodeError::IntegerOverflow));
        // Zero padding past 5 continuation octets.
        let padded = [0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(decode_int(&padded, 0, 5), Err(DecodeError::IntegerOverflow));
        let long = [0xff; 64];
        assert_eq!(decode_int(&long, 0, 7), Err(DecodeError::IntegerOverflow));
    }
}
