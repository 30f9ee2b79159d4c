//! What both flavours' bindings share, written once and instantiated for each: the bindgen
//! mapping of their resources onto the shared types, the host trait impls whose functions are
//! the same (the error resource, buckets, the cache's five operations, vacancies; distinct
//! traits with identical signatures), and their linking.

/// Implements, for the bindings module `$b` (`p2::bindings` or `p3::bindings`), the host traits
/// both flavours share on [`WasiCacheCtxView`](crate::WasiCacheCtxView).
macro_rules! impl_shared_hosts {
    ($b:path) => {
        use $b as flavour_bindings;

        impl flavour_bindings::wasi::keyvalue::wasi_keyvalue_error::Host
            for $crate::ctx::WasiCacheCtxView<'_>
        {
        }

        impl flavour_bindings::wasi::keyvalue::wasi_keyvalue_error::HostError
            for $crate::ctx::WasiCacheCtxView<'_>
        {
            fn trace(
                &mut self,
                err: wasmtime::component::Resource<$crate::CacheError>,
            ) -> wasmtime::Result<String> {
                $crate::guard::guarded("error.trace", || {
                    $crate::ctx::WasiCacheCtxView::trace(self, &err)
                })
            }

            fn drop(
                &mut self,
                err: wasmtime::component::Resource<$crate::CacheError>,
            ) -> wasmtime::Result<()> {
                $crate::guard::guarded("error.drop", || self.delete(err))
            }
        }

        impl flavour_bindings::wasi::keyvalue::types::Host for $crate::ctx::WasiCacheCtxView<'_> {}

        impl flavour_bindings::wasi::keyvalue::types::HostBucket
            for $crate::ctx::WasiCacheCtxView<'_>
        {
            fn open_bucket(
                &mut self,
                name: String,
            ) -> $crate::ops::GuestResult<wasmtime::component::Resource<$crate::Bucket>> {
                $crate::guard::guarded("open-bucket", || {
                    $crate::ctx::WasiCacheCtxView::open_bucket(self, name)
                })
            }

            fn drop(
                &mut self,
                bucket: wasmtime::component::Resource<$crate::Bucket>,
            ) -> wasmtime::Result<()> {
                $crate::guard::guarded("bucket.drop", || self.delete(bucket))
            }
        }

        impl flavour_bindings::wasi::keyvalue::cache::Host for $crate::ctx::WasiCacheCtxView<'_> {
            fn get(
                &mut self,
                k: String,
            ) -> wasmtime::Result<wasmtime::component::Resource<$crate::FutureGetResult>> {
                $crate::guard::guarded("get", || $crate::ctx::WasiCacheCtxView::get(self, k))
            }

            fn exists(
                &mut self,
                k: String,
            ) -> wasmtime::Result<wasmtime::component::Resource<$crate::FutureExistsResult>> {
                $crate::guard::guarded("exists", || $crate::ctx::WasiCacheCtxView::exists(self, k))
            }

            fn set(
                &mut self,
                k: String,
                v: wasmtime::component::Resource<$crate::OutgoingValue>,
                ttl_ms: Option<u32>,
            ) -> wasmtime::Result<wasmtime::component::Resource<$crate::FutureResult>> {
                $crate::guard::guarded("set", || {
                    $crate::ctx::WasiCacheCtxView::set(self, k, &v, ttl_ms)
                })
            }

            fn get_or_set(
                &mut self,
                k: String,
            ) -> wasmtime::Result<wasmtime::component::Resource<$crate::FutureGetOrSetResult>> {
                $crate::guard::guarded("get-or-set", || {
                    $crate::ctx::WasiCacheCtxView::get_or_set(self, k)
                })
            }

            fn delete(
                &mut self,
                k: String,
            ) -> wasmtime::Result<wasmtime::component::Resource<$crate::FutureResult>> {
                $crate::guard::guarded("delete", || self.delete_key(k))
            }
        }

        impl flavour_bindings::wasi::keyvalue::cache::HostVacancy
            for $crate::ctx::WasiCacheCtxView<'_>
        {
            fn vacancy_fill(
                &mut self,
                vacancy: wasmtime::component::Resource<$crate::PendingVacancy>,
                ttl_ms: Option<u32>,
            ) -> wasmtime::Result<wasmtime::component::Resource<$crate::OutgoingValue>> {
                $crate::guard::guarded("vacancy-fill", || {
                    $crate::ctx::WasiCacheCtxView::vacancy_fill(self, &vacancy, ttl_ms)
                })
            }

            fn drop(
                &mut self,
                vacancy: wasmtime::component::Resource<$crate::PendingVacancy>,
            ) -> wasmtime::Result<()> {
                // An unfilled vacancy is abandoned here: the backend hands it to a waiter.
                $crate::guard::guarded("vacancy.drop", || self.delete(vacancy))
            }
        }
    };
}

/// Adds, from the bindings module `$b`, the three interfaces to a linker: the
/// `add_to_linker_with` of both flavours.
macro_rules! link_interfaces {
    ($b:path, $linker:expr, $get:expr) => {{
        use flavour_bindings::wasi::keyvalue::{cache, types, wasi_keyvalue_error};
        use $b as flavour_bindings;
        use $crate::ctx::HasWasiCache;
        wasi_keyvalue_error::add_to_linker::<T, HasWasiCache>($linker, $get)?;
        types::add_to_linker::<T, HasWasiCache>($linker, $get)?;
        cache::add_to_linker::<T, HasWasiCache>($linker, $get)?;
        Ok(())
    }};
}

/// The bindings of one flavour's WIT (`path`, the world `wasi-cache:wit/cache`) with its own
/// `imports` options and `with` entries, its resources mapped onto the shared types.
macro_rules! cache_bindgen {
    (path: $path:tt, imports: { $($imports:tt)* }, with: { $($with:tt)* }) => {
        wasmtime::component::bindgen!({
            path: $path,
            world: "wasi-cache:wit/cache",
            imports: { $($imports)* },
            with: {
                $($with)*
                "wasi:keyvalue/wasi-keyvalue-error.error": crate::CacheError,
                "wasi:keyvalue/types.bucket": crate::Bucket,
                "wasi:keyvalue/types.outgoing-value": crate::OutgoingValue,
                "wasi:keyvalue/types.incoming-value": crate::IncomingValue,
                "wasi:keyvalue/cache.future-get-result": crate::FutureGetResult,
                "wasi:keyvalue/cache.future-exists-result": crate::FutureExistsResult,
                "wasi:keyvalue/cache.future-result": crate::FutureResult,
                "wasi:keyvalue/cache.future-get-or-set-result": crate::FutureGetOrSetResult,
                "wasi:keyvalue/cache.vacancy": crate::PendingVacancy,
            },
        });
    };
}

pub(crate) use {cache_bindgen, impl_shared_hosts, link_interfaces};
