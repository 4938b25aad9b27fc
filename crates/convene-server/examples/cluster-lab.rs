//! For the browser tests of cluster mode (tests/e2e/cluster.test.mjs): a
//! real PostgreSQL and Redis for the nodes to share, each in a temporary
//! folder on a Unix socket, as the Rust tests start them. Prints one line of
//! JSON (`{"database": …, "redis": …}`) and runs until its standard input
//! closes (the test ends), then stops both.

use std::io::{Read, Write};

fn main() {
    let database = convene_storage::testing::postgres_url();
    let redis = convene_cluster::testing::Redis::start();
    let line = serde_json::json!({ "database": database, "redis": redis.url() });
    let mut out = std::io::stdout();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(redis);
}
