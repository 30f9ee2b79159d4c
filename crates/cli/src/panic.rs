//! Panics (there should be none): a hook that keeps them off the terminal, so that no Rust
//! backtrace reaches a user, and the catching of one that unwinds out of a component's run
//! (wasmtime resumes a host function's panic there), which is reported as that component's trap.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::Mutex;

use futures::FutureExt;

/// The last panic the hook saw: its message and where it happened.
static LAST: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Replaces the default hook (which prints the panic and a backtrace hint) with one that only
/// remembers the panic for [`message`]: whoever catches it reports it in one line.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info: &PanicHookInfo<'_>| {
        let message = payload_text(info.payload());
        let location = info
            .location()
            .map_or_else(String::new, |at| format!("{}:{}", at.file(), at.line()));
        *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some((message, location));
    }));
}

/// Runs `future`, turning a panic that unwinds out of it into `Err` with the panic's
/// [`message`].
pub async fn catch<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| message(&*payload))
}

/// One line for a caught panic: its message, and where it happened when the hook saw it
/// (`index out of bounds (at src/x.rs:12)`).
pub fn message(payload: &(dyn Any + Send)) -> String {
    let text = payload_text(payload);
    let seen = LAST.lock().unwrap_or_else(|e| e.into_inner()).take();
    let text = match seen {
        Some((message, location)) if message == text && !location.is_empty() => {
            format!("{text} (at {location})")
        }
        _ => text,
    };
    crate::exit::one_line(&text)
}

/// The text a panic was raised with (`panic!("…")` makes a `&str` or a `String`).
fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Engine, Store};

    use super::*;

    /// A component whose export `run` calls its import `boom`.
    const CALLS_BOOM: &str = r#"(component
      (import "boom" (func $boom))
      (core func $boom_lowered (canon lower (func $boom)))
      (core module $m
        (import "host" "boom" (func $b))
        (func (export "run") call $b))
      (core instance $i (instantiate $m
        (with "host" (instance (export "boom" (func $boom_lowered))))))
      (func (export "run") (canon lift (core func $i "run"))))"#;

    /// A real host panic, raised by a host function the component calls (this test's own: the
    /// product has no way to make one), crosses wasmtime's async call and is caught with its
    /// message, and with its location once the hook is installed.
    #[test]
    fn a_host_function_panic_is_caught_with_its_message() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let engine = Engine::default();
        let component = Component::new(&engine, wat::parse_str(CALLS_BOOM).unwrap()).unwrap();
        let mut linker = Linker::<()>::new(&engine);
        linker
            .root()
            .func_wrap_async("boom", |_, (): ()| {
                Box::new(async {
                    panic!("the host broke: {}", 42);
                    #[allow(unreachable_code)]
                    wasmtime::Result::<()>::Ok(())
                })
            })
            .unwrap();
        let call = |with_hook: bool| {
            runtime.block_on(async {
                let mut store = Store::new(&engine, ());
                let instance = linker
                    .instantiate_async(&mut store, &component)
                    .await
                    .unwrap();
                let run = instance
                    .get_typed_func::<(), ()>(&mut store, "run")
                    .unwrap();
                let previous = with_hook.then(|| {
                    let previous = std::panic::take_hook();
                    install_hook();
                    previous
                });
                let caught = catch(run.call_async(&mut store, ())).await;
                if let Some(previous) = previous {
                    std::panic::set_hook(previous);
                }
                caught.map(|result| result.is_ok())
            })
        };
        assert_eq!(call(false), Err("the host broke: 42".to_owned()));
        let message = call(true).unwrap_err();
        assert!(
            message.starts_with("the host broke: 42 (at crates/cli/src/panic.rs:"),
            "{message}"
        );
    }

    #[test]
    fn payloads_without_text_still_give_a_message() {
        // (`message` itself would race the test above for the hook's record.)
        let payload: Box<dyn Any + Send> = Box::new(7u32);
        assert_eq!(payload_text(&*payload), "a panic without a message");
        let payload: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(payload_text(&*payload), "owned");
    }
}
