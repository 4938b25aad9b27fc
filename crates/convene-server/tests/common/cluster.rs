//! Nodes of a cluster for the tests: the real binary, sharing a PostgreSQL
//! and a Redis, and the HTTP calls the tests make of them.

use std::time::{Duration, Instant};

use convene_cluster::Cluster;
use serde_json::Value;

use super::binary::{self, Process};

pub fn start_node(n: usize, dir: &std::path::Path, database: &str, redis: &str) -> Process {
    start_node_with(n, dir, database, redis, &[])
}

/// As [`start_node`], with more flags.
pub fn start_node_with(
    n: usize,
    dir: &std::path::Path,
    database: &str,
    redis: &str,
    more: &[&str],
) -> Process {
    let mut args = node_args(n, dir, database, redis);
    args.extend(more.iter().map(|a| a.to_string()));
    binary::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The flags of node `n` (id `nN`, data in `dir/nN`) on `database` and `redis`.
pub fn node_args(n: usize, dir: &std::path::Path, database: &str, redis: &str) -> Vec<String> {
    let data = dir.join(format!("n{n}"));
    [
        "--listen",
        "127.0.0.1:0",
        "--media-listen",
        "127.0.0.1:0",
        "--log",
        "warn",
        "--data-dir",
        data.to_str().unwrap(),
        "--database",
        database,
        "--cluster",
        "--redis",
        redis,
        "--node-id",
        &format!("n{n}"),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A new meeting's id and host key.
pub async fn create(node: &Process, title: &str) -> (String, String) {
    let r = http()
        .post(format!("{}/api/meetings", node.url))
        .json(&serde_json::json!({ "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["hostKey"].as_str().unwrap().to_string(),
    )
}

/// Where `node` says the meeting's socket is: itself, or the node it names.
pub async fn socket_node(node: &str, meeting: &str) -> String {
    let v: Value = http()
        .get(format!("{node}/api/meetings/{meeting}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["node"].as_str().unwrap_or(node).to_string()
}

/// Until `check` holds of the live nodes, at most `within`.
pub async fn wait_for_nodes(
    observer: &Cluster,
    within: Duration,
    check: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let ids: Vec<String> = observer
            .nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        if check(&ids) {
            return;
        }
        assert!(Instant::now() < deadline, "live nodes: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
