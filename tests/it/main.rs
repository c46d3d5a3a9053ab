//! The one integration-test binary (the DuckDB link is paid once). Tests drive the library
//! and the real binary against the built-in Graph simulator over loopback HTTP.

mod util;

mod architecture;
mod cli;
mod corpus;
mod crash;
mod extract;
mod faults;
mod incremental;
mod load;
mod partitioned;
mod people;
mod realworld;
mod report;
mod serve;
mod transform;
mod transport;
mod web;
