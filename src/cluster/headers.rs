//! Header names the nodes of a cluster exchange, in one place: the forwarder sets them, the
//! internal endpoint and the HTTP edge read them.

/// The request's id, echoed on every answer and carried to the owner node.
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// The node whose booking actor answered a booking action.
pub(crate) const SERVED_BY: &str = "x-ridelock-served-by";
/// Set on a refusal from a draining node: the request was not handled at all.
pub(crate) const DRAINING: &str = "x-ridelock-draining";

// The signed internal call's own headers are in `cluster::auth`, next to what they sign.
