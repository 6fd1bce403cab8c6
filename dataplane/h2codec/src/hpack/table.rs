//! The static table (RFC 7541 Appendix A) and the dynamic table (§2.3.2,
//! §4), shared by the decoder and the encoder.

use std::collections::VecDeque;

/// RFC 7541 Appendix A: entry `i` (1-based) is `STATIC[i - 1]`.
pub(crate) const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Number of static entries: dynamic indices start after it.
pub(crate) const STATIC_LEN: usize = STATIC.len();

/// Static entry `index` (1..=61) as `(name, value)`.
pub fn static_entry(index: u8) -> Option<(&'static [u8], &'static [u8])> {
    STATIC.get(usize::from(index).checked_sub(1)?).copied()
}

/// The first static index whose name is `name`, e.g. 2 for `:method`.
///
/// A `match` on the bytes: the compiler turns it into a dispatch on the
/// length and then a few comparisons, not a scan of 61 entries.
pub fn static_name_index(name: &[u8]) -> Option<u8> {
    Some(match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

/// The first static index with the same name as static entry `index`:
/// callers then see one number per name (`:method POST` → 2).
#[inline]
pub(crate) const fn first_with_same_name(index: u8) -> u8 {
    match index {
        3 => 2,
        5 => 4,
        7 => 6,
        9..=14 => 8,
        _ => index,
    }
}

/// The static index of `(name, value)` given the first static index of
/// the name: entries sharing a name are adjacent, so this looks at no
/// more than the 7 `:status` entries.
#[inline]
pub(crate) fn static_full_match(first: u8, value: &[u8]) -> Option<u8> {
    let name = STATIC[usize::from(first) - 1].0;
    let mut i = usize::from(first) - 1;
    while i < STATIC_LEN && STATIC[i].0 == name {
        if STATIC[i].1 == value {
            return Some(i as u8 + 1);
        }
        i += 1;
    }
    None
}

/// Per-entry overhead of the table size (§4.1).
pub(crate) const ENTRY_OVERHEAD: usize = 32;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Absolute offset of the name in the byte stream of all insertions
    /// (see [`DynTable::bytes`]).
    off: u64,
    name_len: usize,
    value_len: usize,
    static_name: Option<u8>,
}

impl Entry {
    fn size(&self) -> usize {
        self.name_len + self.value_len + ENTRY_OVERHEAD
    }
}

/// The dynamic table: entries in insertion order, evicted oldest first.
///
/// No heap allocation per entry: names and values live back to back in
/// one byte buffer, oldest first, and the entry list only holds offsets.
/// Evicting an entry just marks its bytes dead at the front of the
/// buffer; the buffer is compacted (the live bytes moved to the front)
/// when dead bytes outnumber live ones, which keeps it under three times
/// the maximum size and costs amortized O(1) per inserted byte. Once the
/// buffer and the entry list have grown to the table's size, steady
/// state allocates nothing.
#[derive(Debug)]
pub(crate) struct DynTable {
    /// Names and values of the entries, oldest first, after `dead`
    /// leading bytes of evicted entries.
    bytes: Vec<u8>,
    /// Absolute offset of `bytes[0]`: entries keep absolute offsets so
    /// that compaction does not have to touch them.
    base: u64,
    dead: usize,
    /// Oldest first.
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// Entries ever inserted: the newest entry's insertion number is
    /// `inserted - 1`. The encoder's hash maps refer to entries by it.
    inserted: u64,
}

impl DynTable {
    pub(crate) fn new(max_size: usize) -> DynTable {
        DynTable {
            bytes: Vec::new(),
            base: 0,
            dead: 0,
            entries: VecDeque::new(),
            size: 0,
            max_size,
            inserted: 0,
        }
    }

    /// The table size of §4.1: names + values + 32 per entry.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn max_size(&self) -> usize {
        self.max_size
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn inserted(&self) -> u64 {
        self.inserted
    }

    fn slices(&self, e: &Entry) -> (&[u8], &[u8]) {
        let start = (e.off - self.base) as usize;
        let mid = start + e.name_len;
        (&self.bytes[start..mid], &self.bytes[mid..mid + e.value_len])
    }

    /// Entry `i`, 0 being the newest (HPACK index 62):
    /// `(name, value, static_name)`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], &[u8], Option<u8>)> {
        let pos = self.entries.len().checked_sub(i + 1)?;
        let e = &self.entries[pos];
        let (name, value) = self.slices(e);
        Some((name, value, e.static_name))
    }

    /// The entry with insertion number `n`, if still in the table.
    #[inline]
    pub(crate) fn get_abs(&self, n: u64) -> Option<(&[u8], &[u8])> {
        let oldest = self.inserted - self.entries.len() as u64;
        let pos = n.checked_sub(oldest)?;
        let e = self.entries.get(usize::try_from(pos).ok()?)?;
        Some(self.slices(e))
    }

    /// Sets the maximum size (a size update) and evicts down to it.
    pub(crate) fn set_max_size(
        &mut self,
        max_size: usize,
        on_evict: impl FnMut(u64, &[u8], &[u8]),
    ) {
        self.max_size = max_size;
        self.evict_to(max_size, on_evict);
    }

    /// Evicts every entry.
    pub(crate) fn clear(&mut self, on_evict: impl FnMut(u64, &[u8], &[u8])) {
        self.evict_to(0, on_evict);
    }

    /// Evicts oldest entries until the size is at most `limit`, telling
    /// `on_evict` each one's insertion number, name and value.
    fn evict_to(&mut self, limit: usize, mut on_evict: impl FnMut(u64, &[u8], &[u8])) {
        while self.size > limit {
            let n = self.inserted - self.entries.len() as u64;
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            self.size -= e.size();
            // Its bytes stay in the buffer (dead) until the next compaction.
            let (name, value) = self.slices(&e);
            on_evict(n, name, value);
            self.dead += e.name_len + e.value_len;
        }
    }

    /// Moves the live bytes to the front once dead bytes are the majority.
    fn compact(&mut self) {
        let live = self.bytes.len() - self.dead;
        if self.dead > 0 && self.dead >= live {
            self.bytes.copy_within(self.dead.., 0);
            self.bytes.truncate(live);
            self.base += self.dead as u64;
            self.dead = 0;
        }
    }

    /// Whether an entry of `size` (with overhead) can be inserted; if not,
    /// inserting it would just empty the table (§4.4).
    #[inline]
    pub(crate) fn fits(&self, size: usize) -> bool {
        size <= self.max_size
    }

    /// Inserts `(name, value)` after evicting what it needs (§4.4). An
    /// entry larger than the maximum size empties the table and is not
    /// inserted: returns whether it was.
    pub(crate) fn insert(
        &mut self,
        name: &[u8],
        value: &[u8],
        static_name: Option<u8>,
        on_evict: impl FnMut(u64, &[u8], &[u8]),
    ) -> bool {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if !self.fits(size) {
            self.evict_to(0, on_evict);
            return false;
        }
        self.compact();
        self.evict_to(self.max_size - size, on_evict);
        let off = self.base + self.bytes.len() as u64;
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.push(off, name.len(), value.len(), static_name);
        true
    }

    /// Inserts a new entry whose name is that of entry `name_of` (0 = the
    /// newest) and whose value is `value`. The named entry may be evicted
    /// by this very insertion (§4.4 allows it): its bytes are still in the
    /// buffer then, because compaction only runs before evicting.
    /// Returns whether the entry was inserted (see [`DynTable::insert`]).
    pub(crate) fn insert_with_name_of(
        &mut self,
        name_of: usize,
        value: &[u8],
        on_evict: impl FnMut(u64, &[u8], &[u8]),
    ) -> bool {
        let Some(pos) = self.entries.len().checked_sub(name_of + 1) else {
            return false;
        };
        let src = self.entries[pos];
        let size = src.name_len + value.len() + ENTRY_OVERHEAD;
        if !self.fits(size) {
            self.evict_to(0, on_evict);
            return false;
        }
        self.compact();
        let name_start = (src.off - self.base) as usize;
        self.evict_to(self.max_size - size, on_evict);
        let off = self.base + self.bytes.len() as u64;
        self.bytes
            .extend_from_within(name_start..name_start + src.name_len);
        self.bytes.extend_from_slice(value);
        self.push(off, src.name_len, value.len(), src.static_name);
        true
    }

    fn push(&mut self, off: u64, name_len: usize, value_len: usize, static_name: Option<u8>) {
        let e = Entry {
            off,
            name_len,
            value_len,
            static_name,
        };
        self.size += e.size();
        self.entries.push_back(e);
        self.inserted += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_evict(_: u64, _: &[u8], _: &[u8]) {}

    #[test]
    fn static_name_index_matches_the_table() {
        for (i, (name, _)) in STATIC.iter().enumerate() {
            let first = STATIC.iter().position(|(n, _)| n == name).unwrap() + 1;
            assert_eq!(static_name_index(name), Some(first as u8));
            assert_eq!(first_with_same_name(i as u8 + 1), first as u8);
            assert_eq!(static_entry(i as u8 + 1), Some(STATIC[i]));
        }
        assert_eq!(static_entry(0), None);
        assert_eq!(static_entry(62), None);
        assert_eq!(static_name_index(b"x-custom"), None);
        assert_eq!(static_name_index(b""), None);
        assert_eq!(static_name_index(b":Method"), None);
        assert_eq!(static_full_match(8, b"404"), Some(13));
        assert_eq!(static_full_match(8, b"201"), None);
        assert_eq!(static_full_match(2, b"POST"), Some(3));
        assert_eq!(static_full_match(16, b"gzip, deflate"), Some(16));
        assert_eq!(static_full_match(16, b""), None);
        assert_eq!(static_full_match(61, b""), Some(61));
        assert_eq!(static_full_match(1, b"x"), None);
    }

    #[test]
    fn insert_evict_and_compact() {
        let mut t = DynTable::new(100);
        let mut evicted = Vec::new();
        // 3 entries of 10 + 10 + 32 = 52: only one fits at a time.
        for i in 0..50u64 {
            let name = format!("name-{:05}", i);
            let value = format!("value{:05}", i);
            assert!(
                t.insert(name.as_bytes(), value.as_bytes(), None, |n, nm, v| {
                    evicted.push((n, nm.to_vec(), v.to_vec()))
                })
            );
            assert_eq!(t.len(), 1);
            assert_eq!(t.size(), 52);
            assert_eq!(t.get(0).unwrap().0, name.as_bytes());
            assert_eq!(t.get_abs(i).unwrap().1, value.as_bytes());
            assert!(t.bytes.len() <= 3 * 100);
        }
        assert_eq!(evicted.len(), 49);
        for (i, (n, name, _)) in evicted.iter().enumerate() {
            assert_eq!(*n, i as u64);
            assert_eq!(name, format!("name-{:05}", i).as_bytes());
        }
        assert!(t.get(1).is_none());
        assert!(t.get_abs(48).is_none());
    }

    #[test]
    fn too_large_empties_the_table() {
        let mut t = DynTable::new(64);
        assert!(t.insert(b"a", b"b", Some(3), no_evict));
        assert_eq!(t.size(), 34);
        assert!(!t.insert(b"a", &[0; 32], None, no_evict));
        assert_eq!(t.size(), 0);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn insert_with_name_of_an_entry_it_evicts() {
        let mut t = DynTable::new(2 * 40);
        assert!(t.insert(b"aaaa", b"1111", Some(7), no_evict)); // 40
        assert!(t.insert(b"bbbb", b"2222", None, no_evict)); // 40
                                                             // Named after the oldest entry, which the insertion evicts.
        assert!(t.insert_with_name_of(1, b"3333", no_evict));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0), Some((&b"aaaa"[..], &b"3333"[..], Some(7))));
        assert_eq!(t.get(1), Some((&b"bbbb"[..], &b"2222"[..], None)));
        // Named after the newest entry, evicting the other one; many
        // times, across compactions.
        for i in 0..20 {
            let v = format!("{i:04}");
            assert!(t.insert_with_name_of(0, v.as_bytes(), no_evict));
            assert_eq!(t.get(0).unwrap().0, b"aaaa");
            assert_eq!(t.get(0).unwrap().1, v.as_bytes());
        }
    }

    #[test]
    fn shrinking_evicts() {
        let mut t = DynTable::new(4096);
        for i in 0..10u8 {
            t.insert(&[b'n', i], &[b'v', i], None, no_evict);
        }
        assert_eq!(t.size(), 360);
        t.set_max_size(100, no_evict);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0).unwrap().0, &[b'n', 9]);
        t.set_max_size(0, no_evict);
        assert_eq!(t.len(), 0);
        assert_eq!(t.size(), 0);
    }
}
