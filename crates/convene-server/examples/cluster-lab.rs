//! For the browser tests of cluster mode (tests/e2e/cluster.test.mjs): a
//! real PostgreSQL and Redis for the nodes to share, each in a temporary
//! folder on a Unix socket, as the Rust tests start them. Prints one line of
//! JSON (`{"database": …, "redis": …}`) and runs until its standard input
//! closes (the test ends), then stops both. A line `stop-redis` or
//! `start-redis` on its input stops or starts Redis again (empty), each
//! answered with a line `done` once it has.

use std::io::{BufRead, Write};

fn main() {
    let database = convene_storage::testing::postgres_url();
    let mut redis = convene_cluster::testing::Redis::start();
    let line = serde_json::json!({ "database": database, "redis": redis.url() });
    let mut out = std::io::stdout();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
    for command in std::io::stdin().lock().lines() {
        let Ok(command) = command else { break };
        match command.trim() {
            "stop-redis" => redis.stop(),
            "start-redis" => redis.start_again(),
            other => eprintln!("cluster-lab: unknown command {other:?}"),
        }
        writeln!(out, "done").unwrap();
        out.flush().unwrap();
    }
    drop(redis);
}
