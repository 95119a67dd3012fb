//! Kubernetes mode: Ingresses, Services, EndpointSlices, Secrets and Policy objects become
//! routes and certificates.

pub mod crd;
pub mod translate;
