//! The backend every instance's cache calls go to, built from the options ([`backend`]): Redis
//! or a Redis Cluster (with the TLS files of `--redis-ca-cert`, `--redis-client-cert` and
//! `--redis-client-key`, and passwords redacted from its errors), else the embedded engine.

use std::sync::Arc;

use wasi_cache_engine::{Backend, Config as CacheConfig, Limits, MemoryCache};
use wasi_cache_redis::{RedisBackend, RedisConfig, RedisTarget, RedisTls};
use wasmtime::error::Context;
use wasmtime::{Result, bail};

use crate::options::CommonArgs;

/// The cache every instance's keys live in, configured from the options: Redis with `--redis`
/// or `--redis-cluster` (connected and answering within `--redis-timeout`), else the embedded
/// engine.
pub fn backend(args: &CommonArgs, runtime: &tokio::runtime::Runtime) -> Result<Arc<dyn Backend>> {
    let target = match &args.redis {
        Some(url) => Some((RedisTarget::Server(url.clone()), vec![url.as_str()])),
        None if !args.redis_cluster.is_empty() => Some((
            RedisTarget::Cluster(args.redis_cluster.clone()),
            args.redis_cluster.iter().map(String::as_str).collect(),
        )),
        None => None,
    };
    if let Some((target, urls)) = target {
        let what = match target {
            RedisTarget::Cluster(_) => "the Redis Cluster",
            RedisTarget::Server(_) => "Redis",
        };
        let config = RedisConfig {
            target,
            tls: redis_tls(args)?,
            op_timeout: args.redis_timeout,
            vacancy_timeout: args.vacancy_timeout,
            limits: cache_limits(args),
            near_cache: args.near_cache,
        };
        // The backend's connections and pub/sub task live on the runtime that runs the component.
        return match runtime.block_on(RedisBackend::connect(config)) {
            Ok(redis) => Ok(Arc::new(redis)),
            // The CLI gives up at startup (so the library's "keeps reconnecting" hint does not
            // apply), and never prints a password.
            Err(err) => {
                let mut message = err
                    .to_string()
                    .replace(" the backend keeps reconnecting", "");
                for url in &urls {
                    message = message.replace(url, &redact(url));
                }
                let shown: Vec<String> = urls.iter().map(|url| redact(url)).collect();
                bail!("cannot connect to {what} at {}: {message}", shown.join(","))
            }
        };
    }
    let config = CacheConfig {
        capacity: args.capacity,
        limits: cache_limits(args),
        vacancy_timeout: args.vacancy_timeout,
        ..CacheConfig::default()
    };
    let cache = MemoryCache::new(config).context("cannot create the cache")?;
    Ok(Arc::new(cache))
}

/// The certificates of `--redis-ca-cert`, `--redis-client-cert` and `--redis-client-key`, read
/// and checked (the error names the file and what is wrong with it).
fn redis_tls(args: &CommonArgs) -> Result<RedisTls> {
    let client = args
        .redis_client_cert
        .as_deref()
        .zip(args.redis_client_key.as_deref());
    match RedisTls::from_files(args.redis_ca_cert.as_deref(), client) {
        Ok(tls) => Ok(tls),
        Err(wasi_cache_engine::Error::InvalidConfig(message)) => bail!("{message}"),
        Err(err) => bail!("{err}"),
    }
}

/// `url` without its password (`redis://user:secret@host` → `redis://user:***@host`), for
/// error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at]
                .split_once(':')
                .map_or(&rest[..at], |(user, _)| user);
            let hidden = if user.len() == at { "" } else { ":***" };
            format!("{scheme}://{user}{hidden}@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// The key and value size limits of the options.
pub fn cache_limits(args: &CommonArgs) -> Limits {
    Limits {
        max_key_size: args.max_key_size,
        max_value_size: args.max_value_size,
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://:pw@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(redact("rediss://me:p@w@h/0"), "rediss://me:***@h/0");
        assert_eq!(redact("redis://me@h"), "redis://me@h");
        assert_eq!(redact("redis://h/a@b"), "redis://h/a@b");
        assert_eq!(redact("nonsense"), "nonsense");
    }
}
