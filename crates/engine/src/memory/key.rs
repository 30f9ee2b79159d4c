//! An entry's stored key, `namespace id ‖ key`, kept inline in the entry when short, so that a
//! hit compares the key without chasing a pointer.

/// Longest stored key kept inline (namespace id included); longer ones go to the heap.
const INLINE: usize = 22;

/// Bytes of the namespace id that prefixes every stored key.
const ID: usize = 4;

/// A stored key: inline up to 22 bytes (24 bytes in all), else boxed.
pub(super) enum KeyBytes {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<KeyBytes>() == 24);

impl KeyBytes {
    /// The empty key of a free slot.
    pub(super) const EMPTY: Self = Self::Inline {
        len: 0,
        buf: [0; INLINE],
    };

    /// The stored form of `key` in namespace `ns`.
    pub(super) fn new(ns: u32, key: &[u8]) -> Self {
        Self::new_inline(ns, key).unwrap_or_else(|| {
            let mut heap = Vec::with_capacity(ID + key.len());
            heap.extend_from_slice(&ns.to_le_bytes());
            heap.extend_from_slice(key);
            Self::Heap(heap.into_boxed_slice())
        })
    }

    /// The inline stored form, if the key is short enough for one.
    #[inline]
    fn new_inline(ns: u32, key: &[u8]) -> Option<Self> {
        let len = ID + key.len();
        (len <= INLINE).then(|| {
            let mut buf = [0; INLINE];
            buf[..ID].copy_from_slice(&ns.to_le_bytes());
            buf[ID..len].copy_from_slice(key);
            Self::Inline {
                len: len as u8,
                buf,
            }
        })
    }

    #[inline]
    fn stored(&self) -> &[u8] {
        match self {
            Self::Inline { len, buf } => &buf[..*len as usize],
            Self::Heap(stored) => stored,
        }
    }

    /// Whether this is the key `probe` looks for.
    #[inline]
    pub(super) fn is(&self, probe: &Probe<'_>) -> bool {
        match (self, probe) {
            // Both zero-padded: a fixed-size compare, no call to memcmp.
            (
                Self::Inline { len, buf },
                Probe::Inline {
                    len: plen,
                    buf: pbuf,
                },
            ) => len == plen && buf == pbuf,
            (Self::Heap(stored), Probe::Heap { ns, key }) => {
                stored.len() == ID + key.len()
                    && stored[..ID] == ns.to_le_bytes()
                    && &stored[ID..] == *key
            }
            _ => false,
        }
    }

    /// The namespace id and key.
    #[inline]
    pub(super) fn parts(&self) -> (u32, &[u8]) {
        let (id, key) = self.stored().split_at(ID);
        (u32::from_le_bytes(id.try_into().expect("4-byte id")), key)
    }

    /// Length of the stored form of a `key_len`-byte key (saturating, for limits near
    /// `usize::MAX`).
    pub(super) const fn stored_len(key_len: usize) -> usize {
        key_len.saturating_add(ID)
    }

    /// Length of the stored form.
    pub(super) fn len(&self) -> usize {
        self.stored().len()
    }
}

/// A key being looked up, laid out like the stored form it must equal, built once per call.
pub(super) enum Probe<'a> {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap { ns: u32, key: &'a [u8] },
}

impl<'a> Probe<'a> {
    #[inline]
    pub(super) fn new(ns: u32, key: &'a [u8]) -> Self {
        match KeyBytes::new_inline(ns, key) {
            Some(KeyBytes::Inline { len, buf }) => Self::Inline { len, buf },
            _ => Self::Heap { ns, key },
        }
    }
}
