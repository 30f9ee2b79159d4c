//! Key bytes stored inline in the entry when short, so a hit does not chase a pointer to
//! compare the key.

/// Longest key kept inline; longer keys go to the heap.
const INLINE: usize = 22;

/// A key's bytes: inline up to 22 bytes (24 bytes in all), else boxed.
pub(super) enum KeyBytes {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<KeyBytes>() == 24);

impl KeyBytes {
    pub(super) fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..key.len()].copy_from_slice(key);
            Self::Inline {
                len: key.len() as u8,
                buf,
            }
        } else {
            Self::Heap(key.into())
        }
    }

    /// The empty key of a free slot.
    pub(super) const EMPTY: Self = Self::Inline {
        len: 0,
        buf: [0; INLINE],
    };

    #[inline]
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, buf } => &buf[..*len as usize],
            Self::Heap(key) => key,
        }
    }
}
