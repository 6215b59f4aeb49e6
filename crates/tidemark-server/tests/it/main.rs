//! The PostgreSQL endpoint with real clients: psql (the Debian postgresql-client
//! binary), tokio-postgres, psycopg, SQLAlchemy and pgjdbc, against a warehouse
//! built by the demo generator (no MariaDB or Kafka needed). Each test builds its
//! own warehouse and server on a free port, so tests run in parallel. `slt_wire`
//! instead serves tidemark-query's `.slt` warehouse and runs those files over the
//! wire.

mod access;
mod auth;
mod clients;
mod corpus;
mod errors;
mod psql;
mod refresh;
mod reload;
mod slt_wire;
mod support;
mod tls;
mod tokio_pg;
mod wire_db;
