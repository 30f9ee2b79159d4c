//! The component's environment and namespace in options: `--env NAME[=VALUE]` and
//! `--namespace NAME`.

use wasi_cache_engine::Namespace;

/// Parses a namespace name (at most the engine's namespace length limit).
pub fn parse_namespace(text: &str) -> Result<Namespace, String> {
    Namespace::new(text).map_err(|err| err.to_string())
}

/// Parses `NAME=VALUE` (a value) or `NAME` (the host's value, passed through).
pub fn parse_env(text: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (text, None),
    };
    if name.is_empty() {
        return Err(format!(
            "`{text}` has no variable name (expected NAME=VALUE or NAME)"
        ));
    }
    Ok((name.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_vars() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), Some("b=c".into()))));
        assert_eq!(parse_env("HOME"), Ok(("HOME".into(), None)));
        assert!(parse_env("=x").is_err());
    }

    #[test]
    fn namespaces() {
        assert_eq!(parse_namespace("tenant-a").unwrap().as_str(), "tenant-a");
        assert!(parse_namespace(&"n".repeat(300)).is_err());
    }
}
