//! A short run of each scenario against a real server: it works and the results
//! are well-formed. Nothing is asserted about speed.

use std::process::Command;

use convene_server::config::Config;

async fn server() -> convene_server::RunningServer {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = std::env::temp_dir().join(format!(
        "convene-bench-smoke-{}",
        convene_storage::new_meeting_id()
    ));
    config.reconnect_grace = 2;
    config.admin_token = Some("test-admin-token".into());
    config.log = "warn".into();
    convene_server::start(config).await.unwrap()
}

fn run_bench(url: &str, args: &[&str]) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!(
        "convene-bench-{}.json",
        convene_storage::new_meeting_id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_convene-bench"))
        .args([
            "--server",
            url,
            "--duration",
            "2",
            "--warmup",
            "1",
            "--join-rate",
            "200",
        ])
        .args(["--server-pid", &std::process::id().to_string()])
        .args(["--json", json.to_str().unwrap()])
        .args(args)
        .output()
        .expect("convene-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("forwarded packets/s"),
        "a table for people: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::remove_file(json).ok();
    v
}

fn assert_well_formed(v: &serde_json::Value, participants: u64) {
    assert_eq!(v["participants"], participants);
    for key in [
        "joinsPerSec",
        "windowSecs",
        "forwardedPacketsPerSec",
        "forwardedPayloadMbitPerSec",
        "lossPercent",
    ] {
        assert!(
            v[key].as_f64().is_some_and(|x| x.is_finite() && x >= 0.0),
            "{key} in {v}"
        );
    }
    assert!(
        v["forwardedPacketsPerSec"].as_f64().unwrap() > 0.0,
        "media flowed: {v}"
    );
    assert!(
        v["delayP50Ms"].as_f64().is_some() && v["delayP99Ms"].as_f64().is_some(),
        "{v}"
    );
    assert!(v["delaySamples"].as_u64().unwrap() > 0);
    assert!(
        v["serverCpuSeconds"].as_f64().is_some() && v["serverRssMib"].as_f64().is_some(),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scenario_runs_and_reports() {
    let server = server().await;
    let url = server.url.clone();
    let scenarios: [(&[&str], u64); 3] = [
        (
            &[
                "--scenario",
                "fan-out",
                "--subscribers",
                "4",
                "--video-kbps",
                "200",
            ],
            5,
        ),
        (
            &[
                "--scenario",
                "meeting",
                "--participants",
                "3",
                "--video-kbps",
                "200",
            ],
            3,
        ),
        (
            &[
                "--scenario",
                "audio-room",
                "--speakers",
                "2",
                "--listeners",
                "4",
                "--meetings",
                "2",
            ],
            12,
        ),
    ];
    for (args, participants) in scenarios {
        let url = url.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // The bench is a separate process; the server runs in this one.
        let v = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_bench(&url, &args)
        })
        .await
        .unwrap();
        assert_well_formed(&v, participants);
    }
    server.shutdown().await;
}

#[test]
fn refuses_targets_off_loopback_and_oversized_runs() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_convene-bench"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--server", "http://10.1.2.3:8080"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = run(&["--server", "http://127.0.0.1:9", "--subscribers", "5000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit"));
}
