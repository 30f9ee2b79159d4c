//! The serde format of typed values: postcard by default, JSON with the `json` feature.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The name of the format typed values are stored in.
pub const FORMAT: &str = if cfg!(feature = "json") {
    "json"
} else {
    "postcard"
};

/// Encodes `value` in the SDK's format ([`FORMAT`]).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    #[cfg(feature = "json")]
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string());
    #[cfg(not(feature = "json"))]
    let bytes = postcard::to_stdvec(value).map_err(|e| e.to_string());
    bytes.map_err(|message| Error::Encode {
        type_name: std::any::type_name::<T>(),
        message,
    })
}

/// Decodes bytes stored in the SDK's format ([`FORMAT`]); `key` only names the value in errors.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    #[cfg(feature = "json")]
    let value = serde_json::from_slice(bytes).map_err(|e| e.to_string());
    #[cfg(not(feature = "json"))]
    let value = match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(e) => Err(e.to_string()),
    };
    value.map_err(|message| Error::Decode {
        key: key.to_owned(),
        type_name: std::any::type_name::<T>(),
        message: format!("{message} ({FORMAT}, {} bytes)", bytes.len()),
    })
}
