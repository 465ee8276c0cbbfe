//! What runs a function's events: a WebAssembly component in the runtime, or an external
//! HTTP endpoint. The trigger layer treats both alike: the same ordering per key, retries
//! and dead letters.

use crate::bindings::{Event, OutputEvent};
use crate::endpoint::EndpointFunction;
use crate::error::InvokeError;
use crate::runtime::Function;

/// A deployed version's code.
pub(crate) enum Handler {
    Component(Function),
    Endpoint(EndpointFunction),
}

impl Handler {
    /// Runs one batch and returns its outputs.
    pub fn invoke(&self, events: &[Event]) -> Result<Vec<OutputEvent>, InvokeError> {
        match self {
            Handler::Component(function) => function.invoke(events),
            Handler::Endpoint(endpoint) => endpoint.invoke(events),
        }
    }

    /// The component, which may also answer HTTP requests; endpoint functions handle events
    /// only.
    pub fn component(&self) -> Option<&Function> {
        match self {
            Handler::Component(function) => Some(function),
            Handler::Endpoint(_) => None,
        }
    }
}
