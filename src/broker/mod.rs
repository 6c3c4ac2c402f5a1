//! The broker: the leader's side of the node endpoint. It keeps the credentials of `Endpoint`
//! bindings in memory ([`store`]) and serves them over HTTPS to podcreds' node agents
//! ([`server`]), after checking with the apiserver's TokenReview that the agent is one and that
//! the pod asking runs on the agent's node as the binding's ServiceAccount ([`authorize`]).

pub mod store;
