use super::*;

/// A deployment file in a folder of its own; returns (folder, file).
fn file(text: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "convene-config-file-{}",
        convene_storage::new_meeting_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("convene.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

const HOME: &str = "[home]\nname = \"Department for Tests\"\n\n";

fn parse(args: &[&str]) -> Result<Cli, String> {
    let mut all = vec!["convene"];
    all.extend_from_slice(args);
    parse_with_file(all).map_err(|e| match e {
        ParseError::Clap(e) => e.to_string(),
        ParseError::File(s) => s,
    })
}

#[test]
fn the_server_table_sets_what_flags_do_and_flags_win() {
    let (dir, path) = file(&format!(
        "{HOME}[server]\nlisten = \"127.0.0.1:9000\"\nmax_participants = 50\nmedia-workers = 2\n\
         data_dir = \"data\"\ntrusted_proxy = [\"10.0.0.1\", \"10.1.0.0/16\"]\nlog_format = \"json\"\n"
    ));
    let p = path.to_str().unwrap();
    let c = parse(&["--config", p]).unwrap().config;
    assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.max_participants, 50);
    assert_eq!(c.media_workers, Some(2));
    // Relative to the file's folder, not to wherever the server was started.
    assert_eq!(c.data_dir, dir.join("data"));
    assert_eq!(c.trusted_proxies.len(), 2);
    assert_eq!(c.log_format, crate::config::LogFormat::Json);
    // Not in the file: the built-in default.
    assert_eq!(c.reconnect_grace, 5);
    // A flag overrides the file.
    let c = parse(&["--config", p, "--max-participants", "7"])
        .unwrap()
        .config;
    assert_eq!(c.max_participants, 7);
    assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
    // And so before a subcommand: the file's options still apply to it.
    let cli = parse(&["--config", p, "audit", "verify"]).unwrap();
    assert_eq!(cli.config.data_dir, dir.join("data"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn every_problem_in_the_server_table_is_named_at_its_line_and_column() {
    let (dir, path) = file(&format!(
        "{HOME}[server]\nlisten = \"nowhere\"\nmax_participants = 0\n  colour = \"blue\"\nidle_timeout = {{ seconds = 3 }}\nconfig = \"other.toml\"\n"
    ));
    let err = parse(&["--config", path.to_str().unwrap()]).unwrap_err();
    let p = path.display();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    for (line, col, words) in [
        (5, 1, "server.listen: invalid value 'nowhere'"),
        (6, 1, "from 1 to 10000"),
        (7, 3, "server.colour: no such option"),
        (8, 1, "server.idle_timeout: expected a string or a number"),
        (9, 1, "server.config: no such option"),
    ] {
        let prefix = format!("{p}:{line}:{col}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(words)),
            "{prefix}…{words} in:\n{err}"
        );
    }
    // In the file's order.
    assert!(
        lines[0].contains(":5:1: ") && lines[4].contains(":9:1: "),
        "{err}"
    );
    // check-config finds the same, and stops nothing.
    let found = check(&path, None);
    assert_eq!(found.len(), 5, "{found:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_config_names_the_line_in_the_deployment_and_the_policy_file() {
    let (dir, path) = file(&format!(
        "{HOME}[sessions]\nhours = 8\nminutes = 3\n[server]\npolicy = \"levels.toml\"\n"
    ));
    std::fs::write(
        dir.join("levels.toml"),
        "[[level]]\nid = \"a\"\nname = \"A\"\nbanner = { text = \"A\", foreground = \"#ffffff\", background = \"#777777\" }\nmax_participants = 10\n",
    )
    .unwrap();
    let found = check(&path, None);
    let p = path.display();
    assert!(
        found
            .iter()
            .any(|l| l.starts_with(&format!("{p}:6:1: ")) && l.contains("unknown field `minutes`")),
        "{found:?}"
    );
    // The policy the file names, relative to the file.
    let levels = dir.join("levels.toml");
    assert!(
        found
            .iter()
            .any(|l| l.starts_with(&format!("{}:1: ", levels.display())) && l.contains("contrast")),
        "{found:?}"
    );
    // Fixed, nothing is found.
    std::fs::write(
        &path,
        format!("{HOME}[server]\nlisten = \"127.0.0.1:8443\"\n"),
    )
    .unwrap();
    assert_eq!(check(&path, None), Vec::<String>::new());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/uk.toml");
    assert_eq!(check(&path, Some(&shipped)), Vec::<String>::new());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn options_that_clash_are_found_together() {
    let (dir, path) = file(&format!("{HOME}[server]\ntls_cert = \"cert.pem\"\n"));
    let found = check(&path, None);
    assert!(
        found
            .iter()
            .any(|l| l.contains("--tls-cert needs --tls-key")),
        "{found:?}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn toml_errors_become_a_place_and_one_line() {
    let e = toml::from_str::<toml::Table>("a = 1\nb = \n").unwrap_err();
    let p = Problem::from_message(&e.to_string());
    assert_eq!((p.line, p.column), (Some(2), Some(5)), "{e}");
    assert!(!p.message.contains('\n') && !p.message.is_empty(), "{p:?}");
    let p = Problem::from_message("line 7: level \"b\": too lax");
    assert_eq!((p.line, p.column), (Some(7), None));
    assert_eq!(p.message, "level \"b\": too lax");
}

/// The example deployment file shows every option of `[server]` (commented
/// out), so operators find them where they edit.
#[test]
fn the_example_file_lists_every_server_option() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = std::fs::read_to_string(root.join("convene.example.toml")).unwrap();
    let cmd = Cli::command();
    let missing: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_IN_FILE.contains(l))
        .map(|l| l.replace('-', "_"))
        .filter(|k| {
            !example.contains(&format!("\n# {k} = ")) && !example.contains(&format!("\n{k} = "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in convene.example.toml's [server]: {missing:?}"
    );
}
