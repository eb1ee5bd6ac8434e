//! Fixed-layout little-endian structures (`spec/FORMAT.md` section 1, "Conventions").
//!
//! Every fixed structure of the format is declared with [`fixed_layout!`], which
//! lists the fields in on-disk order and asserts at compile time that their widths
//! add up to the size the specification gives. Encoding and decoding walk the
//! fields in order, so the byte table in `spec/FORMAT.md` and the declaration here
//! are the same list.

/// A field type that has a fixed little-endian encoding.
pub trait LeField: Sized {
    /// Encoded width in bytes.
    const WIDTH: usize;
    /// Decodes from exactly `WIDTH` bytes.
    fn get(bytes: &[u8]) -> Self;
    /// Encodes into exactly `WIDTH` bytes.
    fn put(&self, bytes: &mut [u8]);
}

macro_rules! le_int {
    ($($t:ty),*) => {$(
        impl LeField for $t {
            const WIDTH: usize = core::mem::size_of::<$t>();
            fn get(bytes: &[u8]) -> Self {
                let mut raw = [0u8; core::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw)
            }
            fn put(&self, bytes: &mut [u8]) {
                bytes.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le_int!(u8, u16, u32, u64, i64);

impl<const N: usize> LeField for [u8; N] {
    const WIDTH: usize = N;
    fn get(bytes: &[u8]) -> Self {
        let mut raw = [0u8; N];
        raw.copy_from_slice(bytes);
        raw
    }
    fn put(&self, bytes: &mut [u8]) {
        bytes.copy_from_slice(self);
    }
}

/// Declares a fixed-size on-disk structure: the fields in on-disk order, their
/// types, and the total size, which is checked against the sum of the field widths
/// at compile time.
macro_rules! fixed_layout {
    (
        $(#[$meta:meta])*
        pub struct $name:ident : $size:literal bytes {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Encoded size in bytes, as the specification's table gives it.
            pub const SIZE: usize = $size;

            /// Decodes the structure from its encoded bytes. Performs no validation:
            /// see the type's `validate` where it has one.
            pub fn decode(bytes: &[u8; $size]) -> Self {
                let mut at = 0usize;
                $(
                    let $field = <$ty as $crate::layout::LeField>::get(
                        &bytes[at..at + <$ty as $crate::layout::LeField>::WIDTH],
                    );
                    at += <$ty as $crate::layout::LeField>::WIDTH;
                )*
                debug_assert_eq!(at, $size);
                Self { $($field,)* }
            }

            /// Decodes a record body that must be exactly [`Self::SIZE`] bytes
            /// (`spec/FORMAT.md` 5.1, "exactly"): any other length is
            /// `record-malformed`, named `what`. Performs no other validation.
            pub fn decode_exact(body: &[u8], what: &'static str) -> Result<Self, $crate::FormatError> {
                let bytes: &[u8; $size] = body.try_into().map_err(|_| {
                    $crate::FormatError::malformed(what, format!("{} bytes, expected exactly {}", body.len(), $size))
                })?;
                Ok(Self::decode(bytes))
            }

            /// Encodes the structure into its on-disk bytes.
            pub fn encode(&self) -> [u8; $size] {
                let mut bytes = [0u8; $size];
                let mut at = 0usize;
                $(
                    <$ty as $crate::layout::LeField>::put(
                        &self.$field,
                        &mut bytes[at..at + <$ty as $crate::layout::LeField>::WIDTH],
                    );
                    at += <$ty as $crate::layout::LeField>::WIDTH;
                )*
                debug_assert_eq!(at, $size);
                bytes
            }
        }

        const _: () = assert!(
            0 $(+ <$ty as $crate::layout::LeField>::WIDTH)* == $size,
            concat!("field widths of ", stringify!($name), " do not add up to its declared size"),
        );
    };
}
pub(crate) use fixed_layout;

/// Reads a fixed structure from the front of `bytes`, if there are enough.
pub fn split_array<const N: usize>(bytes: &[u8]) -> Option<(&[u8; N], &[u8])> {
    if bytes.len() < N {
        return None;
    }
    let (head, rest) = bytes.split_at(N);
    let head: &[u8; N] = head.try_into().ok()?;
    Some((head, rest))
}
