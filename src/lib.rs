//! Seckill: a flash-sale service that sells every unit exactly once and keeps every acknowledged order.
//!
//! Layers depend one way: `http` → `actors` and `accounts` → `persistence` → `domain`. `app` assembles them; `bench`
//! is a load generator that talks to a running service over HTTP only.

pub mod accounts;
pub mod actors;
pub mod app;
pub mod bench;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod persistence;
pub mod secrets;
pub mod telemetry;
