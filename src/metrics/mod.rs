//! Prometheus metrics: every service's counters, named once ([`families`]), rendered at
//! scrape time ([`render`]) and served on `[metrics] listen` ([`service`]).

pub mod families;
pub mod render;
pub mod service;
