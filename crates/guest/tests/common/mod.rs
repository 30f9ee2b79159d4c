//! What the SDK's end-to-end test files share.

/// A key unique to this run and API (`api` keeps the async and blocking tests apart), so the
/// tests can rerun against a cache that outlives them (Redis).
pub fn unique_key(api: &str, name: &str) -> String {
    static RUN: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    format!("{api}:{run}:{name}")
}
