//! Rust bindings generated from `wit/function.wit`, and the glue that serves a guest's
//! host calls from an invocation's [`State`](crate::runtime::State).
//!
//! Both worlds share the `types` and `host` interfaces; the `http-function` bindings reuse
//! the `function` bindings' modules so there is one Rust type per WIT type.

pub(crate) mod function_world {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "function",
        additional_derives: [PartialEq, Eq],
    });
}

pub(crate) mod http_world {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "http-function",
        with: {
            "runnel:function/types": super::function_world::runnel::function::types,
            "runnel:function/host": super::function_world::runnel::function::host,
        },
    });
}

pub use function_world::runnel::function::types::{Event, Header, HttpRequest, HttpResponse, Level, OutputEvent, Row};
