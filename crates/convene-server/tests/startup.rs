//! A malformed or contradictory configuration stops the server at start-up,
//! with a message naming the file, the line and the problem.

use convene_server::config::Config;

fn config_with(policy: Option<&str>, deployment: Option<&str>) -> Config {
    let dir = std::env::temp_dir().join(format!(
        "convene-startup-{}",
        convene_storage::new_meeting_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.config_file = deployment.map(|t| write("convene.toml", t));
    config.policy_file = policy.map(|t| write("policy.toml", t));
    config.data_dir = dir.join("data");
    config.reconnect_grace = 2;
    config.log = "warn".into();
    config
}

async fn start_error(config: Config) -> String {
    match convene_server::start(config).await {
        Ok(s) => {
            s.shutdown().await;
            panic!("the server started")
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_bad_policy_or_deployment_file_stops_the_server_naming_the_line() {
    let level = |id: &str, extra: &str| {
        format!("[[level]]\nid = \"{id}\"\nname = \"{id}\"\nbanner = {{ text = \"{id}\", foreground = \"#ffffff\", background = \"#000000\" }}\nmax_participants = 10\n{extra}\n")
    };
    let contradictory = format!(
        "{}{}",
        level("high", "passcode_required = true"),
        level("low", "")
    );
    let e = start_error(config_with(Some(&contradictory), None)).await;
    assert!(
        e.contains("policy.toml: line 7: level \"low\": is less strict than \"high\""),
        "{e}"
    );
    let e = start_error(config_with(Some("[[level]]\nid = \"x\"\nname = 3\n"), None)).await;
    assert!(e.contains("policy.toml") && e.contains("line 3"), "{e}");
    let e = start_error(config_with(
        None,
        Some("[home]\nname = \"x\"\nbogus = true\n"),
    ))
    .await;
    assert!(e.contains("convene.toml") && e.contains("line 3"), "{e}");
    // The shipped example policy starts.
    let four = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policies/four-levels.toml"
    ))
    .unwrap();
    let s = convene_server::start(config_with(Some(&four), None))
        .await
        .unwrap();
    s.shutdown().await;
}
